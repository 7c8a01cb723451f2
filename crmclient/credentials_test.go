package crmclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/crmgate/crmgate/crmclient"
	"github.com/crmgate/crmgate/crmclient/dataversetest"
)

// TestCertificateCredentialAgainstEmulator: the client signs a client
// assertion with its certificate's key
// (https://learn.microsoft.com/entra/identity-platform/certificate-credentials)
// and the emulator's token endpoint verifies it against the registered
// certificate.
func TestCertificateCredentialAgainstEmulator(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "crmgate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	file := filepath.Join(t.TempDir(), "app.pem")
	pemData := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.WriteFile(file, pemData, 0o600); err != nil {
		t.Fatal(err)
	}

	srv := dataversetest.NewServer(dataversetest.Options{TenantID: opsTenant,
		Clients: []dataversetest.Client{{ID: opsClient, Certificate: cert}}})
	defer srv.Close()
	c, err := crmclient.New(crmclient.Config{URL: srv.URL, AuthorityHost: srv.URL, TenantID: opsTenant, ClientID: opsClient, CertificateFile: file})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(context.Background()); err != nil {
		t.Fatalf("WhoAmI with a certificate credential: %v", err)
	}

	// A certificate the emulator does not know is refused with a typed token error.
	other := dataversetest.NewServer(dataversetest.Options{TenantID: opsTenant,
		Clients: []dataversetest.Client{{ID: opsClient, Certificate: &x509.Certificate{Raw: []byte("x")}}}})
	defer other.Close()
	c2, _ := crmclient.New(crmclient.Config{URL: other.URL, AuthorityHost: other.URL, TenantID: opsTenant, ClientID: opsClient,
		CertificateFile: file, MaxRetries: -1})
	var te *crmclient.TokenError
	if _, err := c2.WhoAmI(context.Background()); !errorsAs(err, &te) {
		t.Fatalf("unknown certificate: %v", err)
	}
}

// TestFederatedCredentialAgainstEmulator: workload identity federation
// (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow,
// "third case"): the client reads the federated token file (as projected
// on AKS) at each acquisition and sends it as the client assertion; the
// emulator checks issuer, subject, audience and signature.
func TestFederatedCredentialAgainstEmulator(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const issuer, subject = "https://oidc.aks.example/issuer", "system:serviceaccount:crmgate:crmgate"
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	mint := func(aud string) string {
		now := time.Now()
		tok, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: issuer, Subject: subject, Audience: jwt.Audience{aud},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	file := filepath.Join(t.TempDir(), "azure-identity-token")
	os.WriteFile(file, []byte(mint("api://AzureADTokenExchange")), 0o600)

	srv := dataversetest.NewServer(dataversetest.Options{TenantID: opsTenant,
		Clients: []dataversetest.Client{{ID: opsClient, Federated: []dataversetest.FederatedCredential{{Issuer: issuer, Subject: subject, Key: &key.PublicKey}}}}})
	defer srv.Close()
	c, err := crmclient.New(crmclient.Config{URL: srv.URL, AuthorityHost: srv.URL, TenantID: opsTenant, ClientID: opsClient,
		FederatedTokenFile: file, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(context.Background()); err != nil {
		t.Fatalf("WhoAmI with a federated credential: %v", err)
	}

	// A token for the wrong audience is refused by the emulator.
	os.WriteFile(file, []byte(mint("api://someone-else")), 0o600)
	c2, _ := crmclient.New(crmclient.Config{URL: srv.URL, AuthorityHost: srv.URL, TenantID: opsTenant, ClientID: opsClient,
		FederatedTokenFile: file, MaxRetries: -1})
	var te *crmclient.TokenError
	if _, err := c2.WhoAmI(context.Background()); !errorsAs(err, &te) {
		t.Fatalf("wrong audience: %v", err)
	}
}
