package pages

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestStaticHandler(t *testing.T) {
	r := newRenderer(t, Options{Branding: Branding{PrimaryColor: "#ffd700"}})
	h := r.StaticHandler()
	css := r.StaticURL("style.css")
	if !strings.HasPrefix(css, "/.auth/static/style.css?v=") {
		t.Fatalf("StaticURL(style.css) = %q", css)
	}
	tests := []struct {
		name, method, target string
		header               map[string]string
		wantStatus           int
		wantType             string
		wantCache            string
		wantBody             string
	}{
		{"versioned", http.MethodGet, css, nil, 200, "text/css; charset=utf-8", "public, max-age=31536000, immutable", "font-family"},
		{"unversioned", http.MethodGet, "/.auth/static/style.css", nil, 200, "text/css; charset=utf-8", "no-cache", "font-family"},
		{"stale version", http.MethodGet, "/.auth/static/style.css?v=000000000000", nil, 200, "text/css; charset=utf-8", "no-cache", "font-family"},
		{"already stripped path", http.MethodGet, "/style.css", nil, 200, "text/css; charset=utf-8", "no-cache", "font-family"},
		{"generated theme", http.MethodGet, r.StaticURL("theme.css"), nil, 200, "text/css; charset=utf-8", "public, max-age=31536000, immutable", "--on-primary: #111827;"},
		{"favicon", http.MethodGet, r.StaticURL("favicon.svg"), nil, 200, "image/svg+xml", "public, max-age=31536000, immutable", "<svg"},
		{"head", http.MethodHead, css, nil, 200, "text/css; charset=utf-8", "public, max-age=31536000, immutable", ""},
		{"not modified", http.MethodGet, css, map[string]string{"If-None-Match": `"` + strings.TrimPrefix(css, "/.auth/static/style.css?v=") + `"`}, 304, "", "public, max-age=31536000, immutable", ""},
		{"unknown", http.MethodGet, "/.auth/static/nope.css", nil, 404, "text/plain; charset=utf-8", "", ""},
		{"traversal", http.MethodGet, "/.auth/static/../templates/signin.html", nil, 404, "text/plain; charset=utf-8", "", ""},
		{"template is not static", http.MethodGet, "/.auth/static/layout.html", nil, 404, "text/plain; charset=utf-8", "", ""},
		{"post", http.MethodPost, css, nil, 405, "text/plain; charset=utf-8", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if got := rec.Header().Get("Content-Type"); tt.wantType != "" && got != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", got, tt.wantType)
			}
			if got := rec.Header().Get("Cache-Control"); got != tt.wantCache {
				t.Errorf("Cache-Control = %q, want %q", got, tt.wantCache)
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body does not contain %q:\n%s", tt.wantBody, rec.Body.String())
			}
			if tt.wantStatus == 200 && rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Error("missing X-Content-Type-Options: nosniff")
			}
		})
	}
}

func TestStaticURLChangesWithContent(t *testing.T) {
	a := newRenderer(t, Options{Branding: Branding{PrimaryColor: "#2563eb"}})
	b := newRenderer(t, Options{Branding: Branding{PrimaryColor: "#0f766e"}})
	if a.StaticURL("theme.css") == b.StaticURL("theme.css") {
		t.Error("theme.css URL did not change with the colour")
	}
	if a.StaticURL("style.css") != b.StaticURL("style.css") {
		t.Error("style.css URL changed although its content did not")
	}
	if got := a.StaticURL("missing.css"); got != "/.auth/static/missing.css" {
		t.Errorf("StaticURL(missing) = %q", got)
	}
}
