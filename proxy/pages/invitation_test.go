package pages

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// TestRenderInvitationGolden renders each state of the invitation page,
// checks it with the accessibility checker and against its golden file.
func TestRenderInvitationGolden(t *testing.T) {
	r := newRenderer(t, Options{Branding: Branding{SiteName: "Contoso Partners", PrimaryColor: "#0F766E"}})
	hint := "A long passphrase of several words is best. It must not be your username or email address."
	tests := []struct {
		name   string
		status int
		data   InvitationData
	}{
		{"invitation_code", http.StatusOK, InvitationData{CSRFToken: "tok"}},
		{"invitation_invalid", http.StatusNotFound, InvitationData{CSRFToken: "tok", Error: "This invitation is invalid or has expired."}},
		{"invitation_register", http.StatusOK, InvitationData{State: InvitationRegister, CSRFToken: "tok", Code: "c<o>de", Name: "Dana Vu",
			Email: "d•••@contoso.example", NeedsProof: true, PasswordHint: hint}},
		{"invitation_register_error", http.StatusBadRequest, InvitationData{State: InvitationRegister, CSRFToken: "tok", Code: "code",
			AskEmail: true, EnteredEmail: "ana@contoso.example", Username: "ana", PasswordHint: hint, Error: "Please correct the marked fields.",
			FieldErrors: map[string]string{"password_confirm": "The two passwords differ."}}},
		{"invitation_existing", http.StatusOK, InvitationData{State: InvitationExisting, SignInURL: "/.auth/signin?redirect_url=%2F.auth%2Finvitation%3Fcode%3Dx"}},
		{"invitation_link", http.StatusOK, InvitationData{State: InvitationLink, CSRFToken: "tok", Code: "code", SignedInAs: "ana"}},
		{"invitation_done", http.StatusOK, InvitationData{State: InvitationDone, SignInURL: "/.auth/signin?redirect_url=%2Fwelcome"}},
		{"invitation_pending", http.StatusOK, InvitationData{State: InvitationPending, Email: "a•••@contoso.example"}},
		{"invitation_confirm", http.StatusOK, InvitationData{State: InvitationConfirm, CSRFToken: "tok", Token: "secret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := r.Render(rec, tt.status, PageInvitation, tt.data); err != nil {
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
