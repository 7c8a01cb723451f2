package password

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/crmgate/crmgate/authz"
	"golang.org/x/text/unicode/norm"
)

func TestPolicyCheck(t *testing.T) {
	ana := Subject{Username: "ana.silva", Email: "Ana.Silva@Example.com"}
	bo := Subject{Username: "bo", Email: "bo@example.com"}
	tests := []struct {
		name string
		p    Policy
		pw   string
		who  Subject
		rule string // "" accepted
	}{
		{"default passphrase", Policy{}, "correct horse battery", ana, ""},
		{"short", Policy{}, "tiny pass", ana, RuleTooShort},
		{"one below default", Policy{}, "qmvkrtzpwlx", ana, RuleTooShort},
		{"exactly default", Policy{}, "qmvkrtzpwlxe", ana, ""},
		{"exactly min 8", Policy{MinLength: 8}, "qmvkrtzp", ana, ""},
		{"below min 8", Policy{MinLength: 8}, "qmvkrtz", ana, RuleTooShort},
		{"exactly min 20", Policy{MinLength: 20}, "qmvkrtzpwlxe qmvkrtz", ana, ""},
		{"below min 20", Policy{MinLength: 20}, "qmvkrtzpwlxe qmvkrt", ana, RuleTooShort},
		{"invalid policy falls back to default", Policy{MinLength: 3}, "qmvkrtzpwlx", ana, RuleTooShort},
		{"64", Policy{}, strings.Repeat("qmvkrtzp", 7) + "word bird lamp x", ana, ""},
		{"256", Policy{}, passphrase(256), ana, ""},
		{"257", Policy{}, passphrase(257), ana, RuleTooLong},
		{"2000 bytes", Policy{}, passphrase(2000), ana, RuleTooLong},
		{"256 four-byte runes", Policy{}, emoji(256), ana, ""},
		{"257 four-byte runes", Policy{}, emoji(256) + "🐙", ana, RuleTooLong},
		{"fewer than 256 runes but over MaxBytes when decomposed", Policy{}, strings.Repeat("\u1100\u1161\u11a8", 120), ana, RuleTooLong},
		{"multi-byte counted in runes", Policy{}, "ünïcødé pässwörd", ana, ""},
		{"12 two-byte runes", Policy{}, "äöüßéèñçåøæœ", ana, ""},
		{"11 two-byte runes", Policy{}, "äöüßéèñçåøæ", ana, RuleTooShort},
		// 12 code points typed, 6 letters after NFC: too short.
		{"combining marks counted after NFC", Policy{}, strings.Repeat("e\u0301", 6), ana, RuleTooShort},
		{"combining marks enough after NFC", Policy{}, strings.Repeat("e\u0301q\u0308", 3) + "xwzk vbnr", ana, ""},
		{"CJK", Policy{}, "春眠不覚暁処処聞啼鳥夜来風", ana, ""},
		{"spaces only", Policy{}, strings.Repeat(" ", 16), ana, RuleBlank},
		{"unicode spaces only", Policy{}, strings.Repeat("\u3000\u00a0", 8), ana, RuleBlank},
		{"leading and trailing spaces kept", Policy{}, "  lamp river oboe  ", ana, ""},
		{"tab", Policy{}, "lamp\triver oboe", ana, RuleControl},
		{"newline", Policy{}, "lamp river oboe\n", ana, RuleControl},
		{"NUL", Policy{}, "lamp river\x00oboe", ana, RuleControl},
		{"DEL", Policy{}, "lamp river\x7foboe", ana, RuleControl},
		{"C1 control", Policy{}, "lamp river\u0085oboe", ana, RuleControl},
		{"invalid UTF-8", Policy{}, "lamp river oboe\xff", ana, RuleEncoding},
		{"zero-width joiner emoji allowed", Policy{}, "👩‍👩‍👧 lamp river oboe", ana, ""},
		{"username", Policy{}, "ana.silva", ana, RuleTooShort},
		{"username at 8", Policy{MinLength: 8}, "ana.silva", ana, RuleUsername},
		{"username upper case", Policy{MinLength: 8}, "ANA.SILVA", ana, RuleUsername},
		{"username full-width", Policy{MinLength: 8}, "ａｎａ．ｓｉｌｖａ", ana, RuleUsername},
		{"contains username", Policy{}, "my Ana.Silva rocks", ana, RuleUsername},
		{"email", Policy{}, "ana.silva@example.com", Subject{Email: ana.Email}, RuleEmail},
		{"email local part other case", Policy{}, "ANA.SILVA 2024 ok!", Subject{Email: ana.Email}, RuleEmail},
		{"contains email local part", Policy{}, "hello ana.silva hello", Subject{Email: ana.Email}, RuleEmail},
		{"short username equal", Policy{MinLength: 8}, "bo@example.com", Subject{Username: "bo@example.com"}, RuleUsername},
		{"short username inside is fine", Policy{}, "bonfire lamp river", bo, ""},
		{"short email equal", Policy{}, "BO@example.com", Subject{Email: "bo@example.com"}, RuleEmail},
		{"common at 8", Policy{MinLength: 8}, "password", ana, RuleCommon},
		{"common capitalised", Policy{MinLength: 8}, "Password", ana, RuleCommon},
		{"common upper case", Policy{MinLength: 8}, "PASSWORD", ana, RuleCommon},
		{"common full-width", Policy{MinLength: 8}, "ｐａｓｓｗｏｒｄ", ana, RuleCommon},
		{"common with spaces around", Policy{MinLength: 8}, " iloveyou1 ", ana, RuleCommon},
		{"common at 12", Policy{}, "qwerty123456", ana, RuleCommon},
		{"common at 12 capitalised", Policy{}, "Qwerty123456", ana, RuleCommon},
		{"common doubled", Policy{}, "passwordPassword", ana, RuleCommon},
		{"one character repeated", Policy{}, strings.Repeat("a", 12), ana, RuleCommon},
		{"short group repeated", Policy{}, strings.Repeat("abc1", 4), ana, RuleCommon},
		{"digits repeated", Policy{}, strings.Repeat("12", 8), ana, RuleCommon},
		{"long group repeated is fine", Policy{}, strings.Repeat("lamp river ", 2), ana, ""},
		{"long passphrase", Policy{}, "the quick brown fox jumps over the lazy dog while the ferry waits", ana, ""},
		{"no composition rules", Policy{}, "alllowercaseletters", ana, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Check(tt.pw, tt.who)
			if tt.rule == "" {
				if err != nil {
					t.Fatalf("Check(%.40q) = %v, want accepted", tt.pw, err)
				}
				return
			}
			var re *RuleError
			if !errors.As(err, &re) || re.Rule != tt.rule {
				t.Fatalf("Check(%.40q) = %v, want rule %s", tt.pw, err, tt.rule)
			}
			var ve *authz.ValidationError
			if !errors.As(err, &ve) || ve.Field != "password" || ve.Message == "" || !strings.HasSuffix(ve.Message, ".") {
				t.Fatalf("Check(%.40q) error %#v does not carry a user-facing *authz.ValidationError", tt.pw, err)
			}
			if len(tt.pw) > len("password") && strings.Contains(ve.Message, tt.pw) || (tt.who.Username != "" && strings.Contains(ve.Message, tt.who.Username)) {
				t.Fatalf("message %q echoes the input", ve.Message)
			}
		})
	}
}

// TestPolicyMessages checks that each rule has its own message.
func TestPolicyMessages(t *testing.T) {
	p := Policy{MinLength: 8}
	who := Subject{Username: "ana.silva", Email: "ana.s@example.com"}
	inputs := map[string]string{
		RuleEncoding: "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", RuleControl: "abc\tdefgh", RuleTooLong: passphrase(300),
		RuleTooShort: "abc", RuleBlank: "         ", RuleUsername: "xx ana.silva", RuleEmail: "ana.s@example.com",
		RuleCommon: "password",
	}
	seen := map[string]string{}
	for rule, pw := range inputs {
		var re *RuleError
		if err := p.Check(pw, who); !errors.As(err, &re) || re.Rule != rule {
			t.Fatalf("%s: Check = %v", rule, err)
		}
		if other, dup := seen[re.Invalid.Message]; dup {
			t.Errorf("rules %s and %s share the message %q", rule, other, re.Invalid.Message)
		}
		seen[re.Invalid.Message] = rule
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, n := range []int{0, 8, 12, 64, 256} {
		if err := (Policy{MinLength: n}).Validate(); err != nil {
			t.Errorf("MinLength %d: %v", n, err)
		}
	}
	for _, n := range []int{-1, 1, 7, 257, 1 << 30} {
		if err := (Policy{MinLength: n}).Validate(); err == nil {
			t.Errorf("MinLength %d accepted", n)
		}
	}
	if (Policy{}).Min() != DefaultMinLength {
		t.Errorf("zero policy minimum %d", (Policy{}).Min())
	}
}

// TestCommonList checks the embedded list: folded, no entry shorter than
// the lowest minimum, and large enough to be the list it says it is.
func TestCommonList(t *testing.T) {
	set := common()
	if len(set) < 15000 {
		t.Fatalf("common list has %d entries", len(set))
	}
	for w := range set {
		if fold(w) != w || utf8.RuneCountInString(w) < MinMinLength {
			t.Fatalf("entry %q is not folded or too short", w)
		}
	}
}

// passphrase returns n code points of words and spaces that pass every
// other rule.
func passphrase(n int) string {
	words := []string{"lamp", "river", "oboe", "quartz", "fjord", "mellow", "cactus", "zenith"}
	var b strings.Builder
	for i := 0; utf8.RuneCountInString(b.String()) < n; i++ {
		b.WriteString(words[i%len(words)])
		b.WriteString(words[(i*3+1)%len(words)][:2])
		b.WriteByte(' ')
	}
	r := []rune(b.String())[:n]
	r[n-1] = 'x'
	return string(r)
}

// emoji returns n different four-byte code points (pictographs from U+1F300).
func emoji(n int) string {
	r := make([]rune, n)
	for i := range r {
		r[i] = 0x1F300 + rune(i)
	}
	return string(r)
}

func FuzzPolicyCheck(f *testing.F) {
	for _, s := range []string{"correct horse battery", "password", "e\u0301e\u0301e\u0301e\u0301e\u0301e\u0301", "\xff", "  ", passphrase(256), "ａｎａ．ｓｉｌｖａ", "\u1100\u1161\u11a8"} {
		f.Add(s, "ana.silva", "ana@example.com", 8)
	}
	f.Fuzz(func(t *testing.T, pw, user, email string, min int) {
		p := Policy{MinLength: min}
		if p.Validate() != nil {
			p = Policy{}
		}
		err := p.Check(pw, Subject{Username: user, Email: email})
		if err == nil {
			n := utf8.RuneCountInString(norm.NFC.String(pw))
			if !utf8.ValidString(pw) || n < p.Min() || n > MaxLength || len(pw) > MaxBytes || !authz.Printable(pw) || strings.TrimSpace(pw) == "" {
				t.Fatalf("accepted %q (%d code points after NFC) under minimum %d", pw, n, p.Min())
			}
			return
		}
		var re *RuleError
		if !errors.As(err, &re) || re.Invalid == nil || re.Invalid.Field != "password" {
			t.Fatalf("error %#v is not a *RuleError", err)
		}
	})
}

func TestPolicyGenerate(t *testing.T) {
	for _, n := range []int{0, 8, 26, 27, 100, 256} {
		p := Policy{MinLength: n}
		a, b := p.Generate(), p.Generate()
		if err := p.Check(a, Subject{}); err != nil || a == b || utf8.RuneCountInString(a) < max(p.Min(), 26) {
			t.Fatalf("MinLength %d: Generate = %q (%v), then %q", n, a, err, b)
		}
	}
}
