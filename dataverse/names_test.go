package dataverse_test

import (
	"strings"
	"testing"

	"github.com/crmgate/crmgate/dataverse"
)

func TestValidColumn(t *testing.T) {
	for _, ok := range []string{"emailaddress1", "_parentcustomerid_value", "adx_identity_username", "a", "x1", strings.Repeat("a", 128)} {
		if err := dataverse.ValidColumn(ok); err != nil {
			t.Errorf("ValidColumn(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1abc", "a-b", "a b", "eq", "null", "nan", "a'b", "é", "_", "__", "A", "FullName", "AND",
		"a\x00", strings.Repeat("a", 129)} {
		if err := dataverse.ValidColumn(bad); err == nil {
			t.Errorf("ValidColumn(%q) accepted", bad)
		} else if !strings.HasPrefix(err.Error(), "must be a Dataverse column name") {
			t.Errorf("ValidColumn(%q) = %q, want a sentence starting with the rule", bad, err)
		}
	}
}

func TestValidContactColumn(t *testing.T) {
	for _, secret := range dataverse.SecretContactColumns {
		if err := dataverse.ValidContactColumn(secret); err == nil || !strings.Contains(err.Error(), "holds a credential") {
			t.Errorf("ValidContactColumn(%q) = %v, want a refusal naming the credential", secret, err)
		}
		if !dataverse.IsSecretContactColumn(strings.ToUpper(secret)) {
			t.Errorf("IsSecretContactColumn(%q) is false", strings.ToUpper(secret))
		}
	}
	if err := dataverse.ValidContactColumn("eq"); err == nil {
		t.Error("ValidContactColumn accepted a keyword")
	}
	if err := dataverse.ValidContactColumn("adx_identity_username"); err != nil {
		t.Errorf("ValidContactColumn(adx_identity_username): %v", err)
	}
}

func TestValidIdentifier(t *testing.T) {
	for _, ok := range []string{"contacts", "alex_WPUserCreated", "adx_inviteContact", "_x", "UserId"} {
		if err := dataverse.ValidIdentifier(ok); err != nil {
			t.Errorf("ValidIdentifier(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1a", "a-b", "a/b", "a(b)", "a?b", "é", strings.Repeat("a", 129)} {
		if err := dataverse.ValidIdentifier(bad); err == nil {
			t.Errorf("ValidIdentifier(%q) accepted", bad)
		}
	}
}

func TestParseID(t *testing.T) {
	for in, want := range map[string]string{
		"0F8FAD5B-D9CB-469F-A165-70867728950E": "0f8fad5b-d9cb-469f-a165-70867728950e",
	} {
		if got, err := dataverse.ParseID(in); err != nil || got != want {
			t.Errorf("ParseID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "00000000-0000-0000-0000-000000000000", "0f8fad5b-d9cb-469f-a165-70867728950", "0f8fad5bd9cb469fa16570867728950e", "x') or true",
		"{0f8fad5b-d9cb-469f-a165-70867728950e}"} {
		if _, err := dataverse.ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}
