package main

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestProbe runs `crmgate probe` against real HTTP servers: every URL must
// answer 2xx, a redirect is not followed, a slow answer times out, and each
// URL gets one line.
func TestProbe(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/draining", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/readyz", http.StatusFound) })
	release := make(chan struct{})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(release)

	cases := []struct {
		name  string
		args  []string
		ok    bool
		lines []string
	}{
		{"one ready", []string{srv.URL + "/readyz"}, true, []string{"ok   " + srv.URL + "/readyz"}},
		{"two ready", []string{srv.URL + "/readyz", srv.URL + "/readyz"}, true, []string{"ok   ", "ok   "}},
		{"one draining", []string{srv.URL + "/readyz", srv.URL + "/draining"}, false, []string{"ok   ", "FAIL " + srv.URL + "/draining: answered 503 Service Unavailable"}},
		{"redirect not followed", []string{srv.URL + "/moved"}, false, []string{"FAIL " + srv.URL + "/moved: answered 302 Found"}},
		{"timeout", []string{"--timeout", "200ms", srv.URL + "/slow"}, false, []string{"FAIL " + srv.URL + "/slow: "}},
		{"refused", []string{"http://127.0.0.1:1/readyz"}, false, []string{"FAIL http://127.0.0.1:1/readyz: "}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			start := time.Now()
			err := run(t.Context(), append([]string{"probe"}, c.args...), nil, nil, &out, &bytes.Buffer{})
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok %v; output:\n%s", err, c.ok, out.String())
			}
			var ue usageError
			if errors.As(err, &ue) {
				t.Fatalf("a failed probe is not a usage error: %v", err)
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != len(c.lines) {
				t.Fatalf("output %q, want %d lines", out.String(), len(c.lines))
			}
			for i, want := range c.lines {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("line %d = %q, want prefix %q", i, lines[i], want)
				}
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %s: the timeout did not apply", time.Since(start))
			}
		})
	}
}

// TestProbeUsage: a bad command line is a usage error naming the problem,
// and nothing is asked.
func TestProbeUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "no URL given"},
		{[]string{"--bogus", "http://x/"}, "flag provided but not defined"},
		{[]string{"--timeout", "0s", "http://x/"}, "--timeout must be positive"},
		{[]string{"--timeout", "soon", "http://x/"}, "invalid value"},
		{[]string{"localhost:9090/readyz"}, "is not an absolute http or https URL"},
		{[]string{"ftp://example.com/"}, "is not an absolute http or https URL"},
		{[]string{"http:///readyz"}, "is not an absolute http or https URL"},
	} {
		var out bytes.Buffer
		err := run(t.Context(), append([]string{"probe"}, c.args...), nil, nil, &out, &bytes.Buffer{})
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("probe %v: err = %v, want a usage error with %q", c.args, err, c.want)
		}
		if out.Len() != 0 {
			t.Errorf("probe %v printed %q", c.args, out.String())
		}
	}
}
