package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
)

// csrfCookieSuffix names the cookie that binds CSRF tokens to a browser
// before it has a session (sign-in CSRF).
const csrfCookieSuffix = "_csrf"

// csrfTokens issues and checks the gateway's form tokens: a token is the
// HMAC of a random per-browser cookie value under a key derived from the
// cookie keys, so another site can neither read nor forge one. This is the
// second layer; http.CrossOriginProtection (Sec-Fetch-Site / Origin) is the
// first and runs on every state-changing request.
type csrfTokens struct {
	keys   [][]byte // newest first; every key verifies
	cookie string
	secure bool
}

func newCSRFTokens(secrets [][]byte, cookieName string, secure bool) *csrfTokens {
	c := &csrfTokens{cookie: cookieName, secure: secure}
	for _, s := range secrets {
		c.keys = append(c.keys, deriveKey(s, "csrf", 32))
	}
	return c
}

func (c *csrfTokens) mac(key []byte, binding string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(binding))
	return m.Sum(nil)
}

// issue returns the token for the browser of r, setting the binding cookie
// on w when the browser has none yet.
func (c *csrfTokens) issue(w http.ResponseWriter, r *http.Request) string {
	binding := ""
	// rand.Text is 26 characters (128 bits): a binding of that length is
	// kept, so that rendering a page does not invalidate the forms of
	// pages rendered before it (another tab, a form shown again).
	if ck, err := r.Cookie(c.cookie); err == nil && len(ck.Value) >= 26 && len(ck.Value) <= 64 {
		binding = ck.Value
	} else {
		binding = rand.Text()
		http.SetCookie(w, &http.Cookie{Name: c.cookie, Value: binding, Path: "/", HttpOnly: true,
			Secure: c.secure, SameSite: http.SameSiteLaxMode})
	}
	return base64.RawURLEncoding.EncodeToString(c.mac(c.keys[0], binding))
}

// valid reports whether token matches the browser's binding cookie.
func (c *csrfTokens) valid(r *http.Request, token string) bool {
	ck, err := r.Cookie(c.cookie)
	if err != nil || ck.Value == "" || token == "" {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return false
	}
	for _, k := range c.keys {
		if hmac.Equal(got, c.mac(k, ck.Value)) {
			return true
		}
	}
	return false
}
