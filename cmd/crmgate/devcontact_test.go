package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDevDemoShowsContactClaims: in `crmgate dev`, alice is bound to her
// emulator contact at sign-in and the demo upstream receives and shows the
// contact claim and headers on /account.
func TestDevDemoShowsContactClaims(t *testing.T) {
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"}, nil, nil, out, io.Discard)
	}()
	defer func() { cancel(); <-done }()
	var base, pw string
	deadline := time.Now().Add(20 * time.Second)
	for base == "" || pw == "" {
		if m := regexp.MustCompile(`open (http://\S+)`).FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
		if m := regexp.MustCompile(`alice\s+password (\S+)`).FindStringSubmatch(out.String()); m != nil {
			pw = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev did not start:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(base + "/.auth/signin")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tok := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(string(b))
	if tok == nil {
		t.Fatal("no csrf token")
	}
	req, _ := http.NewRequest("POST", base+"/.auth/signin", strings.NewReader(url.Values{"login": {"alice"}, "password": {pw},
		"csrf_token": {tok[1]}, "redirect_url": {"/account"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"X-Current-User-Contact-Id", "c0000000-0000-4000-8000-000000000002", "X-Current-User-Contact-Fullname",
		"Alice Example", "&#34;contact&#34;", "Partners"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("demo /account lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", page)
	}
}
