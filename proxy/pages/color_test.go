package pages

import (
	"strings"
	"testing"
)

func TestThemeContrast(t *testing.T) {
	tests := []struct {
		primary   string
		onPrimary rgb
		accent    string // "" means the primary itself
	}{
		{DefaultPrimaryColor, white, ""},
		{"#000000", white, ""},
		{"#0f766e", white, ""},           // teal-700, 5.47:1 with white
		{"#dc2626", white, ""},           // red-600, 4.83:1
		{"#ef4444", darkText, "#d73d3d"}, // red-500, 3.76:1 with white: too light for white text
		{"#ffd700", darkText, "#8a7400"}, // gold
		{"#ffffff", darkText, "#757575"},
		{"#808080", black, "#767676"}, // mid grey: neither white (3.95) nor #111827 (4.33) reaches 4.5
		{"#777777", black, "#757575"}, // 4.48:1 with white just misses AA
	}
	for _, tt := range tests {
		t.Run(tt.primary, func(t *testing.T) {
			c, err := parseColor(tt.primary)
			if err != nil {
				t.Fatal(err)
			}
			th := newTheme(c)
			if th.OnPrimary != tt.onPrimary {
				t.Errorf("OnPrimary = %s (%.2f:1), want %s (%.2f:1)", th.OnPrimary, contrast(c, th.OnPrimary), tt.onPrimary, contrast(c, tt.onPrimary))
			}
			wantAccent := tt.accent
			if wantAccent == "" {
				wantAccent = c.String()
			}
			if th.Accent.String() != wantAccent {
				t.Errorf("Accent = %s (%.2f:1 on white), want %s", th.Accent, contrast(th.Accent, white), wantAccent)
			}
			css := string(th.css())
			if !strings.Contains(css, "--on-primary: "+th.OnPrimary.String()+";") {
				t.Errorf("theme.css does not carry the text colour:\n%s", css)
			}
		})
	}
}

// TestThemeContrastEveryColour checks the contrast guarantees over a grid of 4,096 colours.
func TestThemeContrastEveryColour(t *testing.T) {
	for r := 0; r < 256; r += 17 {
		for g := 0; g < 256; g += 17 {
			for b := 0; b < 256; b += 17 {
				c := rgb{uint8(r), uint8(g), uint8(b)}
				th := newTheme(c)
				checks := []struct {
					what    string
					ratio   float64
					atLeast float64
				}{
					{"button text", contrast(th.Primary, th.OnPrimary), minTextContrast},
					{"hovered button text", contrast(th.PrimaryHover, th.OnPrimary), minTextContrast},
					{"links on white", contrast(th.Accent, white), minTextContrast},
				}
				for _, ch := range checks {
					if ch.ratio < ch.atLeast {
						t.Errorf("%s: %s contrast %.2f:1 < %.1f:1", c, ch.what, ch.ratio, ch.atLeast)
					}
				}
			}
		}
	}
}

func TestContrastKnownValues(t *testing.T) {
	tests := []struct {
		a, b rgb
		want float64
	}{
		{white, black, 21},
		{white, white, 1},
		{rgb{0x76, 0x76, 0x76}, white, 4.54},
		{rgb{0x25, 0x63, 0xeb}, white, 5.17},
	}
	for _, tt := range tests {
		t.Run(tt.a.String()+"/"+tt.b.String(), func(t *testing.T) {
			if got := contrast(tt.a, tt.b); got < tt.want-0.01 || got > tt.want+0.01 {
				t.Errorf("contrast = %.3f, want %.2f", got, tt.want)
			}
		})
	}
}
