package pages

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRenderPasswordGolden renders the password pages in each of their
// states against golden files, each checked for accessibility.
func TestRenderPasswordGolden(t *testing.T) {
	r := newRenderer(t, Options{Branding: Branding{SiteName: "Contoso Partners", PrimaryColor: "#0F766E"}})
	tests := []struct {
		name   string
		status int
		page   Page
		data   any
	}{
		{"signin_reset_link", http.StatusOK, PageSignIn, SignInData{CSRFToken: "tok", ResetURL: "/.auth/reset"}},
		{"reset", http.StatusOK, PageReset, ResetData{CSRFToken: "tok"}},
		{"reset_error", http.StatusTooManyRequests, PageReset, ResetData{CSRFToken: "tok", Login: "ana",
			Error: "Too many requests from your network. Please wait a while and try again."}},
		{"reset_sent", http.StatusOK, PageReset, ResetData{Sent: true}},
		{"reset_confirm", http.StatusOK, PageResetConfirm, ResetConfirmData{CSRFToken: "tok", Token: "secret-abc", Username: "ana", MinLength: 12}},
		{"reset_confirm_error", http.StatusBadRequest, PageResetConfirm, ResetConfirmData{CSRFToken: "tok", Token: "secret-abc", MinLength: 12,
			Error: "The password must be at least 12 characters."}},
		{"reset_confirm_set_password", http.StatusOK, PageResetConfirm, ResetConfirmData{CSRFToken: "tok", Token: "secret-abc",
			Purpose: "set_password", SetPassword: true, Username: "ana", MinLength: 12}},
		{"reset_confirm_invalid", http.StatusNotFound, PageResetConfirm, ResetConfirmData{Invalid: true}},
		{"password", http.StatusOK, PagePassword, PasswordData{CSRFToken: "tok", RedirectURL: "/orders", Username: "ana",
			AskCurrent: true, MinLength: 12, ResetURL: "/.auth/reset"}},
		{"password_forced_errors", http.StatusUnauthorized, PagePassword, PasswordData{CSRFToken: "tok", Username: "ana", Forced: true,
			AskCurrent: true, MinLength: 12, CurrentError: "The current password is incorrect.", NewError: "Too short."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := r.Render(rec, tt.status, tt.page, tt.data); err != nil {
				t.Fatalf("Render: %v", err)
			}
			got := rec.Body.Bytes()
			checkAccessible(t, got)
			golden := filepath.Join("testdata", tt.name+".golden.html")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run go test -update if the change is intended)\ngot:\n%s", golden, got)
			}
		})
	}
}

// TestPasswordPagesEscape: what the user or a link brought is escaped.
func TestPasswordPagesEscape(t *testing.T) {
	r := newRenderer(t, Options{})
	const evil = `"><script>alert(1)</script>`
	for name, d := range map[Page]any{
		PageReset:        ResetData{CSRFToken: evil, Login: evil, Error: evil},
		PageResetConfirm: ResetConfirmData{CSRFToken: evil, Token: evil, Purpose: evil, Username: evil, Error: evil},
		PagePassword:     PasswordData{CSRFToken: evil, RedirectURL: evil, Username: evil, Error: evil, CurrentError: evil, NewError: evil},
	} {
		rec := httptest.NewRecorder()
		if err := r.Render(rec, 200, name, d); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(rec.Body.String(), "<script>") {
			t.Errorf("%s: unescaped input:\n%s", name, rec.Body.String())
		}
	}
}
