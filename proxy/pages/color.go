package pages

import (
	"fmt"
	"math"
	"strconv"
)

// DefaultPrimaryColor is the primary colour used when Branding.PrimaryColor is empty.
// White text on it has a contrast ratio of 5.17:1.
const DefaultPrimaryColor = "#2563eb"

// minTextContrast is the WCAG 2.x AA contrast ratio for normal-size text.
const minTextContrast = 4.5

// rgb is an sRGB colour with 8-bit channels.
type rgb struct{ r, g, b uint8 }

var (
	white    = rgb{0xff, 0xff, 0xff}
	black    = rgb{0x00, 0x00, 0x00}
	darkText = rgb{0x11, 0x18, 0x27} // the body text colour in style.css
)

// parseColor parses "#RGB" or "#RRGGBB" (either case).
func parseColor(s string) (rgb, error) {
	if len(s) != 4 && len(s) != 7 || s[0] != '#' {
		return rgb{}, fmt.Errorf("%w: %q (want #RGB or #RRGGBB)", ErrInvalidColor, s)
	}
	hex := s[1:]
	if len(hex) == 3 {
		hex = string([]byte{hex[0], hex[0], hex[1], hex[1], hex[2], hex[2]})
	}
	// ParseUint accepts only hex digits here: no sign, no prefix, no underscores with base 16.
	v, err := strconv.ParseUint(hex, 16, 32)
	if err != nil {
		return rgb{}, fmt.Errorf("%w: %q (want #RGB or #RRGGBB)", ErrInvalidColor, s)
	}
	return rgb{uint8(v >> 16), uint8(v >> 8), uint8(v)}, nil
}

// String returns the colour as lowercase "#rrggbb".
func (c rgb) String() string { return fmt.Sprintf("#%02x%02x%02x", c.r, c.g, c.b) }

// luminance is the WCAG relative luminance of c.
func (c rgb) luminance() float64 {
	lin := func(v uint8) float64 {
		s := float64(v) / 255
		if s <= 0.04045 {
			return s / 12.92
		}
		return math.Pow((s+0.055)/1.055, 2.4)
	}
	return 0.2126*lin(c.r) + 0.7152*lin(c.g) + 0.0722*lin(c.b)
}

// contrast is the WCAG contrast ratio between a and b, from 1 to 21.
func contrast(a, b rgb) float64 {
	la, lb := a.luminance(), b.luminance()
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

// mix returns c moved towards t by fraction f (0 = c, 1 = t).
func mix(c, t rgb, f float64) rgb {
	m := func(a, b uint8) uint8 { return uint8(math.Round(float64(a) + (float64(b)-float64(a))*f)) }
	return rgb{m(c.r, t.r), m(c.g, t.g), m(c.b, t.b)}
}

// theme holds the colours derived from the primary colour; style.css reads them as CSS
// custom properties from the generated theme.css.
type theme struct {
	Primary      rgb // button background
	OnPrimary    rgb // text on Primary: white when it reaches 4.5:1, else dark text, else black
	PrimaryHover rgb // hovered button background; contrast with OnPrimary stays >= 4.5:1
	Accent       rgb // links and focus rings on white: Primary darkened until it reaches 4.5:1
}

// newTheme derives a theme whose text colours all meet WCAG AA against their backgrounds.
func newTheme(primary rgb) theme {
	t := theme{Primary: primary}
	// The larger of the contrasts against white and black is always at least 4.58:1,
	// so the last choice never fails.
	switch {
	case contrast(primary, white) >= minTextContrast:
		t.OnPrimary = white
	case contrast(primary, darkText) >= minTextContrast:
		t.OnPrimary = darkText
	default:
		t.OnPrimary = black
	}
	// Hover moves the background away from the text colour, so contrast only grows;
	// for white text that means darker, for dark text lighter.
	if t.OnPrimary == white {
		t.PrimaryHover = mix(primary, black, 0.15)
	} else {
		t.PrimaryHover = mix(primary, white, 0.25)
	}
	// Darken in 2% steps: the first shade that passes stays closest to the brand.
	t.Accent = primary
	for i := 1; contrast(t.Accent, white) < minTextContrast && i <= 50; i++ {
		t.Accent = mix(primary, black, float64(i)*0.02)
	}
	return t
}

// css renders the theme as custom properties for theme.css.
func (t theme) css() []byte {
	return fmt.Appendf(nil, ":root {\n  --primary: %s;\n  --on-primary: %s;\n  --primary-hover: %s;\n  --accent: %s;\n}\n",
		t.Primary, t.OnPrimary, t.PrimaryHover, t.Accent)
}
