package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDataverseEmulatorCommand runs the subcommand on a real listener with a
// seed file, takes a token from its token endpoint with the printed secret
// and reads a seeded contact through the Web API.
func TestDataverseEmulatorCommand(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed.json")
	os.WriteFile(seed, []byte(`{"contacts":[{"contactid":"11111111-2222-3333-4444-555555555555","firstname":"Ann","lastname":"Lee","emailaddress1":"ann@example.test"}]}`), 0o600)
	addr := freeAddr(t)
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dataverse-emulator", "--listen", addr, "--seed", seed, "--tenant", "t1", "--client-id", "app"}, nil, nil, out, io.Discard)
	}()
	var secret string
	deadline := time.Now().Add(10 * time.Second)
	for secret == "" {
		if m := regexp.MustCompile(`Client secret:\s+(\S+)`).FindStringSubmatch(out.String()); m != nil {
			secret = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no secret printed:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	base := "http://" + addr
	resp, err := http.PostForm(base+"/t1/oauth2/v2.0/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"},
		"client_secret": {secret}, "scope": {base + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok.AccessToken == "" {
		t.Fatalf("token: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", base+"/api/data/v9.2/contacts?$select=fullname,emailaddress1", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "ann@example.test") {
		t.Fatalf("contacts: %d %s", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("emulator returned %v", err)
	}

	// A broken seed file fails start-up, naming the file.
	os.WriteFile(seed, []byte(`{"contacts":[{"nosuchcolumn":1}]}`), 0o600)
	if err := run(context.Background(), []string{"dataverse-emulator", "--listen", "127.0.0.1:0", "--seed", seed}, nil, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "seed.json") {
		t.Fatalf("bad seed: %v", err)
	}
}
