package password

import (
	"crypto/rand"
	_ "embed"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/crmgate/crmgate/authz"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// The password policy follows NIST SP 800-63B-4, section 3.1.1.2
// "Password Verifiers" (https://pages.nist.gov/800-63-4/sp800-63b.html):
// a minimum length of at least 8 (at least 15 when the password is the
// only factor, as it is in crmgate today: operators who follow that set
// CRMGATE_PASSWORD_MIN_LENGTH=15; the default is 12), a maximum of at
// least 64, every printing character, space
// and Unicode accepted, each Unicode code point counted as one character,
// no composition rules, no truncation, and a check against common, expected
// or compromised values and context-specific words such as the username.
const (
	// DefaultMinLength is the minimum length when Policy.MinLength is zero,
	// and the default of CRMGATE_PASSWORD_MIN_LENGTH.
	DefaultMinLength = 12
	// MinMinLength is the lowest minimum a Policy may set: NIST SP 800-63B
	// requires at least 8 characters.
	MinMinLength = 8
	// MaxLength is the longest password, in code points after NFC
	// normalisation, that a password may be set to. Longer ones are
	// refused, never truncated. A password within MaxLength code points
	// also fits MaxBytes (a code point takes at most 4 bytes in UTF-8)
	// unless its NFC form is longer than what was typed, which only
	// decomposing characters do; Check refuses those over MaxBytes too, so
	// that every password set can be signed in with.
	MaxLength = 256
	// minContextLen is the shortest username or email local part the
	// policy looks for inside a password. Equality is always refused; a
	// shorter name inside a password ("ana" in "banana bread forever")
	// adds too few guessable characters to refuse it for.
	minContextLen = 4
	// maxRepeatUnit is the longest group of characters that, repeated to
	// fill the whole password ("aaaaaaaaaaaa", "abcabcabcabc"), makes it
	// too easy to guess.
	maxRepeatUnit = 4
)

// The rules of the policy, in RuleError.Rule. Each has its own message.
const (
	RuleEncoding = "encoding"  // not valid UTF-8
	RuleControl  = "control"   // a control character (tab, line break, NUL...)
	RuleTooLong  = "too_long"  // more than MaxLength characters or MaxBytes bytes
	RuleTooShort = "too_short" // fewer than the minimum
	RuleBlank    = "blank"     // only white space
	RuleUsername = "username"  // is or contains the username
	RuleEmail    = "email"     // is or contains the email address or its local part
	RuleCommon   = "common"    // on the common-password list, or one short group repeated
)

// Policy is the rule every flow that sets a password applies (an operator
// creating an account or setting a password, and later registration, reset
// and change); sign-in never applies it, so accounts made under an older
// rule keep working. The zero value is the default policy.
type Policy struct {
	// MinLength is the fewest characters (code points after NFC
	// normalisation) a password may have: MinMinLength to MaxLength. Zero
	// means DefaultMinLength.
	MinLength int
}

// Subject names the account a password is being set for, so that the
// password cannot be its username or email. Empty fields are not checked.
type Subject struct {
	Username string
	Email    string
}

// RuleError is the refusal of a password by the policy. It wraps a
// *authz.ValidationError for field "password" whose message is a sentence
// for the person who typed it (it never contains the password), so pages
// and the REST API show it next to the field; Rule says which rule refused
// it, one of the Rule* constants.
type RuleError struct {
	// Rule is one of the Rule* constants.
	Rule string
	// Invalid carries the field and the user-facing message.
	Invalid *authz.ValidationError
}

// Error implements error.
func (e *RuleError) Error() string { return e.Invalid.Error() }

// Unwrap returns the *authz.ValidationError, for errors.As.
func (e *RuleError) Unwrap() error { return e.Invalid }

func refuse(rule, msg string) error {
	return &RuleError{Rule: rule, Invalid: &authz.ValidationError{Field: "password", Message: msg}}
}

// Validate reports whether p is usable: MinLength zero or within
// MinMinLength to MaxLength. It is the check of CRMGATE_PASSWORD_MIN_LENGTH.
func (p Policy) Validate() error {
	if p.MinLength != 0 && (p.MinLength < MinMinLength || p.MinLength > MaxLength) {
		return fmt.Errorf("password: policy: the minimum length must be between %d and %d, got %d", MinMinLength, MaxLength, p.MinLength)
	}
	return nil
}

// Min returns the minimum length p applies.
func (p Policy) Min() int {
	if p.MinLength == 0 {
		return DefaultMinLength
	}
	return p.MinLength
}

// Check applies the policy to pw, to be set as the password of who. It
// returns nil or a *RuleError (which wraps a *authz.ValidationError) of
// the first rule broken, in this order: valid UTF-8; no control
// characters; at most MaxLength characters and MaxBytes bytes; at least
// Min characters; not only white space; not equal to, nor containing, the
// username or the email's local part (compared after NFKC normalisation
// and case folding, so "ANA.Silva" and full-width letters count as
// "ana.silva"); not on the embedded list of common passwords nor one short
// group of characters repeated. Lengths are code points after NFC
// normalisation, so an accented letter counts once whether the keyboard
// sent it composed or as a letter and a combining mark. An invalid p
// (see Validate) is treated as the default policy. Check never panics.
func (p Policy) Check(pw string, who Subject) error {
	if p.Validate() != nil {
		p = Policy{}
	}
	switch {
	case !utf8.ValidString(pw):
		return refuse(RuleEncoding, "The password contains invalid characters.")
	case !authz.Printable(pw):
		return refuse(RuleControl, "The password must not contain control characters such as tabs or line breaks.")
	}
	tooLong := fmt.Sprintf("The password must be at most %d characters long.", MaxLength)
	if len(pw) > MaxBytes {
		// Normalising a huge input is wasted work: it is refused either way.
		if utf8.RuneCountInString(pw) > MaxLength {
			return refuse(RuleTooLong, tooLong)
		}
		return refuse(RuleTooLong, fmt.Sprintf("The password is too long: it takes more than %d bytes. Use fewer accented or non-Latin characters.", MaxBytes))
	}
	n := utf8.RuneCountInString(norm.NFC.String(pw))
	switch {
	case n > MaxLength:
		return refuse(RuleTooLong, tooLong)
	case n < p.Min():
		return refuse(RuleTooShort, fmt.Sprintf("The password must be at least %d characters long.", p.Min()))
	case strings.TrimSpace(pw) == "":
		return refuse(RuleBlank, "The password must not be only spaces.")
	}
	f := fold(pw)
	if name := fold(strings.TrimSpace(who.Username)); containsContext(f, name) {
		return refuse(RuleUsername, "The password must not be or contain your username.")
	}
	if email := fold(strings.TrimSpace(who.Email)); email != "" {
		local, _, _ := strings.Cut(email, "@")
		if f == email || containsContext(f, local) {
			return refuse(RuleEmail, "The password must not be or contain your email address.")
		}
	}
	if isCommon(f) {
		return refuse(RuleCommon, "This password is too common and easy to guess. Choose another, for example a few unrelated words.")
	}
	return nil
}

// fold is the form in which passwords are compared with names and the
// list: NFKC (compatibility forms such as full-width letters become their
// plain letters) then Unicode case folding.
func fold(s string) string {
	return cases.Fold().String(norm.NFKC.String(s))
}

// containsContext reports whether the folded password f is, or holds, the
// folded name: equality always counts, containment from minContextLen
// code points on.
func containsContext(f, name string) bool {
	if name == "" {
		return false
	}
	return f == name || utf8.RuneCountInString(name) >= minContextLen && strings.Contains(f, name)
}

// commonList is common.txt: folded passwords of at least MinMinLength
// code points, one a line; see COMMON_PASSWORDS_LICENSE.txt for its source
// and licence.
//
//go:embed common.txt
var commonList string

// common is the set of commonList, built on first use.
var common = sync.OnceValue(func() map[string]struct{} {
	m := make(map[string]struct{}, strings.Count(commonList, "\n")+1)
	for w := range strings.Lines(commonList) {
		if w = strings.TrimSuffix(w, "\n"); w != "" {
			m[w] = struct{}{}
		}
	}
	return m
})

// isCommon reports whether the folded password f, or f without
// surrounding spaces, is on the list, or is one group of characters
// repeated that is either short (up to maxRepeatUnit) or on the list
// itself ("passwordpassword").
func isCommon(f string) bool {
	set := common()
	for _, s := range []string{f, strings.TrimSpace(f)} {
		if _, ok := set[s]; ok {
			return true
		}
		if u := repeatUnit(s); u != "" {
			if _, ok := set[u]; ok || utf8.RuneCountInString(u) <= maxRepeatUnit {
				return true
			}
		}
	}
	return false
}

// repeatUnit returns the shortest u such that s is u repeated at least
// twice, or "" when there is none.
func repeatUnit(s string) string {
	r := []rune(s)
	for size := 1; size <= len(r)/2; size++ {
		if len(r)%size != 0 {
			continue
		}
		ok := true
		for i := size; i < len(r) && ok; i++ {
			ok = r[i] == r[i-size]
		}
		if ok {
			return string(r[:size])
		}
	}
	return ""
}

// Generate returns a random password that p accepts for any subject: at
// least 128 bits from crypto/rand as base32 text (rand.Text), lengthened
// to p's minimum when that is longer.
func (p Policy) Generate() string {
	for {
		s := rand.Text()
		for len(s) < p.Min() {
			s += rand.Text()
		}
		// rand.Text is ASCII: bytes are characters. Trimming to the
		// minimum keeps at least the 26 characters of one rand.Text.
		s = s[:max(p.Min(), len(rand.Text()))]
		// A random string repeating itself or holding a listed word is
		// astronomically unlikely; checking makes it impossible.
		if p.Check(s, Subject{}) == nil {
			return s
		}
	}
}
