package pages

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// staticCSP is sent with static files: an SVG opened directly must not run scripts.
const staticCSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"

// contentHash is the version put in static URLs: the first 12 hex digits of the SHA-256.
func contentHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// StaticURL returns the URL of the static file name under AuthPrefix + "/static/", with a
// "?v=" content hash so that it can be cached forever. For a name that is not a static file it
// returns the URL without a version (which the handler answers with 404), so a template that
// names a missing file fails visibly in the browser rather than at start-up.
func (r *Renderer) StaticURL(name string) string {
	u := r.brand.AuthPrefix + "/static/" + name
	if a, ok := r.static[name]; ok {
		u += "?v=" + a.hash
	}
	return u
}

// StaticHandler serves the static files: the embedded ones, those from Options.Dir, and the
// generated theme.css. Mount it at AuthPrefix + "/static/" without http.StripPrefix (an already
// stripped path is accepted too). A request whose "v" matches the file's content hash is cached
// for a year as immutable; any other request is revalidated with the ETag. Only GET and HEAD
// are allowed.
func (r *Renderer) StaticHandler() http.Handler {
	prefix := r.brand.AuthPrefix + "/static/"
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(strings.TrimPrefix(req.URL.Path, prefix), "/")
		a, ok := r.static[name]
		if !ok {
			http.NotFound(w, req)
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", staticCSP)
		h.Set("ETag", `"`+a.hash+`"`)
		if req.URL.Query().Get("v") == a.hash {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		// ServeContent sets Content-Type from the extension and answers If-None-Match and Range.
		http.ServeContent(w, req, name, time.Time{}, bytes.NewReader(a.body))
	})
}
