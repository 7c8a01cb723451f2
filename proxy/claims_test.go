package proxy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

// fixedKey is a deterministic P-256 key so the golden kid is stable.
func fixedKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestClaimsGolden pins the X-Current-User contract in README.md, Identity
// headers for upstream apps: the JOSE header and the claims of a token, and
// the plain headers beside it.
func TestClaimsGolden(t *testing.T) {
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	s, err := newSigner("https://gw.example.com", []*ecdsa.PrivateKey{fixedKey(t)}, 5*time.Minute, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	s.newID = func() string { return "TOKENID0000000000000000000" } // jti is random: fixed here
	sess := &Session{ID: "sid", UserID: "u-123", AuthMethod: "password", AuthTime: now.Unix(), CheckedAt: now.Unix(),
		Username: "alice", Email: "alice@example.com", EmailOK: true, Name: "Alice Example", Roles: []string{"partner", "admin"}}
	id, err := s.identity(sess, "https://app.example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(id.token[0], ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", id.token[0])
	}
	decode := func(p string) any {
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	h := http.Header{}
	id.apply(h)
	delete(h, HeaderCurrentUser) // the signature is not deterministic
	got, _ := json.MarshalIndent(map[string]any{"jose_header": decode(parts[0]), "claims": decode(parts[1]), "plain_headers": h}, "", "  ")
	got = append(got, '\n')
	const path = "testdata/claims.golden.json"
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("claims differ from %s (run with -update after a deliberate contract change):\n%s", path, got)
	}
}

// TestClaimsJTIAndEmailVerified checks the jti claim: distinct for every
// signed token (new session, new revision), the same for a reused token, and
// email_verified as the session records it.
func TestClaimsJTIAndEmailVerified(t *testing.T) {
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	s, err := newSigner("https://gw.example.com", []*ecdsa.PrivateKey{fixedKey(t)}, 5*time.Minute, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	payload := func(id *identityHeaders) map[string]any {
		t.Helper()
		b, err := base64.RawURLEncoding.DecodeString(strings.Split(id.token[0], ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	seen := map[string]bool{}
	for i := range 50 {
		sess := &Session{ID: "sid-" + strconv.Itoa(i), UserID: "u", AuthMethod: "password", Username: "u", EmailOK: i%2 == 0, Rev: 1}
		id, err := s.identity(sess, "https://app.example.com", nil)
		if err != nil {
			t.Fatal(err)
		}
		c := payload(id)
		jti, _ := c["jti"].(string)
		if len(jti) < 22 || seen[jti] {
			t.Fatalf("token %d: jti %q is short or repeated", i, jti)
		}
		seen[jti] = true
		if c["email_verified"] != (i%2 == 0) {
			t.Fatalf("token %d: email_verified = %v, want %v", i, c["email_verified"], i%2 == 0)
		}
		again, err := s.identity(sess, "https://app.example.com", nil)
		if err != nil {
			t.Fatal(err)
		}
		if payload(again)["jti"] != jti {
			t.Fatalf("token %d: a reused token changed its jti", i)
		}
		sess.Rev++
		next, err := s.identity(sess, "https://app.example.com", nil)
		if err != nil {
			t.Fatal(err)
		}
		if nj := payload(next)["jti"].(string); nj == jti || seen[nj] {
			t.Fatalf("token %d: a new revision kept jti %q", i, nj)
		}
	}
}
