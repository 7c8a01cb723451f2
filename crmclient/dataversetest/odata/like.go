package odata

import (
	"strings"
	"unicode"
)

type likeKind uint8

const (
	likeRune  likeKind = iota // one given character, in lower case
	likeAny                   // % : any run of characters, even none
	likeOne                   // _ : exactly one character
	likeClass                 // [abc], [a-f], [^abc]
)

// likeTok is one element of a compiled SQL LIKE pattern.
type likeTok struct {
	kind   likeKind
	r      rune
	negate bool
	ranges [][2]rune
}

// compileLike compiles the SQL Server LIKE wildcards % _ [...] [^...]. A "["
// without a closing "]", or with nothing inside, stands for itself. There
// is no escape character other than brackets ("[%]" is a literal %).
func compileLike(s string) []likeTok {
	rs := []rune(s)
	var out []likeTok
	for i := 0; i < len(rs); i++ {
		switch rs[i] {
		case '%':
			if len(out) == 0 || out[len(out)-1].kind != likeAny {
				out = append(out, likeTok{kind: likeAny})
			}
			continue
		case '_':
			out = append(out, likeTok{kind: likeOne})
			continue
		case '[':
			if tok, next, ok := compileClass(rs, i); ok {
				out = append(out, tok)
				i = next
				continue
			}
		}
		out = append(out, likeTok{kind: likeRune, r: unicode.ToLower(rs[i])})
	}
	return out
}

// compileClass reads the class starting at rs[i] == '['. It returns the
// index of the closing ']'.
func compileClass(rs []rune, i int) (likeTok, int, bool) {
	tok := likeTok{kind: likeClass}
	j := i + 1
	if j < len(rs) && rs[j] == '^' {
		tok.negate = true
		j++
	}
	start := j
	for j < len(rs) && rs[j] != ']' {
		j++
	}
	if j >= len(rs) || j == start {
		return likeTok{}, 0, false
	}
	body := rs[start:j]
	for k := 0; k < len(body); k++ {
		lo, hi := body[k], body[k]
		if k+2 < len(body) && body[k+1] == '-' {
			hi = body[k+2]
			k += 2
		}
		tok.ranges = append(tok.ranges, [2]rune{lo, hi})
	}
	return tok, j, true
}

func (t likeTok) matches(r rune) bool {
	switch t.kind {
	case likeOne:
		return true
	case likeRune:
		return t.r == r
	case likeClass:
		in := false
		for _, rg := range t.ranges {
			for _, c := range [...]rune{r, unicode.ToUpper(r)} {
				if c >= unicode.ToLower(rg[0]) && c <= unicode.ToLower(rg[1]) || c >= rg[0] && c <= rg[1] {
					in = true
				}
			}
		}
		return in != t.negate
	}
	return false
}

// likeMatch reports whether s matches the pattern, ignoring case. It is the
// usual greedy wildcard match with backtracking to the last %, so it takes
// at most len(pattern)*len(s) steps.
func likeMatch(pat []likeTok, s string) bool {
	rs := []rune(strings.ToLower(s))
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(rs) {
		switch {
		case pi < len(pat) && pat[pi].kind == likeAny:
			star, mark = pi, si
			pi++
		case pi < len(pat) && pat[pi].matches(rs[si]):
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pat) && pat[pi].kind == likeAny {
		pi++
	}
	return pi == len(pat)
}
