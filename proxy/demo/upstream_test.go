package demo

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestUpstreamPages(t *testing.T) {
	key := newSigningKey(t, "k1")
	srv := newJWKSServer(t, key.public())
	app := httptest.NewServer(NewUpstream(UpstreamOptions{
		JWKSURL: srv.URL, Issuer: testIssuer, Client: srv.Client(), Now: func() time.Time { return t0 },
	}))
	t.Cleanup(app.Close)

	hostile := validClaims(t0)
	hostile.Name = `<script>alert("name")</script>`
	hostile.Roles = []string{"member"}
	admin := validClaims(t0)

	tests := []struct {
		name       string
		path       string
		headers    map[string]string
		wantStatus int
		want       []string
		notWant    []string
	}{
		{
			name: "signed in, hostile values escaped", path: "/account",
			headers: map[string]string{
				"X-Current-User":               key.sign(t, hostile),
				"X-Current-User-Id":            "u-123",
				"X-Current-User-Name":          `<img src=x onerror=alert(1)>`,
				"X-Current-User-Contact-Email": "ana@contoso.example",
				"Cookie":                       "theme=dark; app_session=s3cr3t-value",
			},
			wantStatus: http.StatusOK,
			want: []string{
				"<h1>Your account</h1>", "Token valid", "expires in 5m0s",
				`&#34;sub&#34;: &#34;u-123&#34;`, `\u003cscript\u003e`, // the claims JSON, escaped twice over
				"<th scope=\"row\">X-Current-User-Id</th>", "X-Current-User-Contact-Email", "&lt;img src=x onerror=alert(1)&gt;",
				"<code>theme</code>", "<code>app_session</code>", `href="/.auth/signout"`,
			},
			notWant: []string{"<script>", "<img src=x", "s3cr3t-value", "dark"},
		},
		{
			name: "anonymous", path: "/", wantStatus: http.StatusOK,
			want:    []string{"Not signed in", `href="/.auth/signin?redirect_url=%2F"`, "None. The gateway removes"},
			notWant: []string{"Token valid", "Sign out"},
		},
		{
			name: "invalid token", path: "/account",
			headers:    map[string]string{"X-Current-User": "eyJhbGciOiJub25lIn0.e30."},
			wantStatus: http.StatusOK,
			want:       []string{"Token invalid: demo: malformed token", `href="/.auth/signin?redirect_url=%2Faccount"`},
		},
		{
			name: "admin area with admin role", path: "/admin",
			headers:    map[string]string{"X-Current-User": key.sign(t, admin)},
			wantStatus: http.StatusOK,
			want:       []string{"<h1>Administration</h1>", "carries the <code>admin</code> role", `aria-current="page">Admin`},
		},
		{
			name: "admin area without admin role", path: "/admin",
			headers:    map[string]string{"X-Current-User": key.sign(t, hostile)},
			wantStatus: http.StatusOK,
			want:       []string{"without a verified <code>admin</code> role"},
		},
		{
			name: "unknown page", path: "/nope?<x>", wantStatus: http.StatusNotFound,
			want: []string{"Page not found"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, app.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			resp, err := app.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			body := string(raw)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("page contains %q", w)
				}
			}
			if t.Failed() {
				t.Logf("page:\n%s", body)
			}
		})
	}
}

func TestUpstreamWhoami(t *testing.T) {
	key := newSigningKey(t, "k1")
	srv := newJWKSServer(t, key.public())
	h := NewUpstream(UpstreamOptions{JWKSURL: srv.URL, Issuer: testIssuer, Client: srv.Client(), Now: func() time.Time { return t0 }})

	tests := []struct {
		name       string
		token      string
		wantStatus int
		check      func(t *testing.T, body map[string]any)
	}{
		{"valid", key.sign(t, validClaims(t0)), http.StatusOK, func(t *testing.T, body map[string]any) {
			contact, _ := body["contact"].(map[string]any)
			if body["sub"] != "u-123" || body["iss"] != testIssuer || body["preferred_username"] != "ana" || contact["logicalname"] != "contact" {
				t.Errorf("claims = %v", body)
			}
		}},
		{"anonymous", "", http.StatusUnauthorized, func(t *testing.T, body map[string]any) {
			if body["error"] != "not signed in" {
				t.Errorf("body = %v", body)
			}
		}},
		{"expired", key.sign(t, validClaims(t0.Add(-time.Hour))), http.StatusUnauthorized, func(t *testing.T, body map[string]any) {
			if msg, _ := body["error"].(string); !strings.HasPrefix(msg, "token invalid: demo: invalid claims") {
				t.Errorf("body = %v", body)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/api/whoami", nil)
			if tt.token != "" {
				req.Header.Set("X-Current-User", tt.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body is not JSON: %v\n%s", err, rec.Body)
			}
			tt.check(t, body)
		})
	}
}
