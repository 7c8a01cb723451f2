package crmclient_test

import (
	"context"
	"errors"
	"testing"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
)

// TestWhoAmIAgainstEmulator runs the real client against the emulator over
// HTTP: a client-secret token from the emulator's Entra endpoint, then WhoAmI.
func TestWhoAmIAgainstEmulator(t *testing.T) {
	srv := dataversetest.NewServer(dataversetest.Options{TenantID: "t1",
		Clients:        []dataversetest.Client{{ID: "0c000000-0000-0000-0000-000000000003", Secret: "s3cret"}},
		OrganizationID: "0a000000-0000-0000-0000-000000000001", BusinessUnitID: "0b000000-0000-0000-0000-000000000002"})
	defer srv.Close()
	c, err := crmclient.New(crmclient.Config{URL: srv.URL, AuthorityHost: srv.URL, TenantID: "t1", ClientID: "0c000000-0000-0000-0000-000000000003", ClientSecret: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	who, err := c.WhoAmI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if who.OrganizationID.String() != "0a000000-0000-0000-0000-000000000001" || who.BusinessUnitID.String() != "0b000000-0000-0000-0000-000000000002" || who.UserID.IsZero() {
		t.Fatalf("WhoAmI = %+v", who)
	}
	if _, err := c.WhoAmI(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := srv.Requests("POST token"); n != 1 {
		t.Fatalf("token requests = %d, want 1 (cached)", n)
	}

	// A wrong secret is a typed token error, not a retry storm.
	bad, _ := crmclient.New(crmclient.Config{URL: srv.URL, AuthorityHost: srv.URL, TenantID: "t1", ClientID: "0c000000-0000-0000-0000-000000000003", ClientSecret: "wrong"})
	_, err = bad.WhoAmI(context.Background())
	var te *crmclient.TokenError
	if !errorsAs(err, &te) || te.Code != "invalid_client" {
		t.Fatalf("wrong secret: %v", err)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
