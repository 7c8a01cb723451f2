package capture

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.html static/capture.css
var templates embed.FS

// styleName is the page's own style sheet, served at Prefix/style.css.
const styleName = "style.css"

var pageTemplates = template.Must(template.ParseFS(templates, "templates/*.html"))

// HandlerOptions configure the page of a Server.
type HandlerOptions struct {
	// Prefix is the path the page is served under, such as
	// "/.auth/dev/mail": the list at Prefix, each message at Prefix/ID.
	// Required; it must start with "/" and not end with one.
	Prefix string
	// Stylesheets are the URLs of the style sheets the page links to (the
	// gateway's, so that it looks like its pages); nil shows it unstyled.
	Stylesheets []string
	// SiteName is shown in the header; empty means "crmgate".
	SiteName string
	// HomeURL is the way back to the site; empty means "/".
	HomeURL string
	// Send, when set, offers a "Send a test mail" button that calls it; it
	// should enqueue a mail through the gateway's outbox, so that the mail
	// takes the production path to this server. nil offers no button.
	Send func(ctx context.Context) error
	// Wait is how long a press of the button waits for the mail to arrive
	// before it shows the list; zero means 5 seconds.
	Wait time.Duration
	// Logger receives failures of Send; nil discards them.
	Logger *slog.Logger
}

// pageCSP lets the page load its style sheets and frame its own sandboxed
// HTML views, and nothing else.
const pageCSP = "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// htmlCSP serves a captured HTML body as a sandboxed document: an opaque
// origin without scripts, forms or same-origin access, whose links may
// only open the top window or a new one when clicked; it loads only
// images and inline styles, as mail clients do.
const htmlCSP = "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation; " +
	"default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"

// iframeSandbox is the iframe's sandbox attribute, the same rights as htmlCSP.
const iframeSandbox = "allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"

// Handler returns the page that lists the kept messages (newest first,
// with subject, recipients and time) and shows each: headers, the plain
// text with its links clickable, the HTML in a sandboxed frame and the
// raw source as text. It serves nothing outside o.Prefix (404). The
// button's POST is refused unless the browser says it comes from this
// page's origin (Sec-Fetch-Site or Origin), so that another site cannot
// press it. It fails for a bad Prefix.
func (s *Server) Handler(o HandlerOptions) (http.Handler, error) {
	p := o.Prefix
	if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || path.Clean(p) != p || strings.ContainsAny(p, "{} \t") {
		return nil, fmt.Errorf("capture: page prefix %q must be a clean path starting with / and not ending with one", p)
	}
	h := &handler{s: s, o: o, log: o.Logger}
	if h.o.SiteName == "" {
		h.o.SiteName = "crmgate"
	}
	if h.o.HomeURL == "" {
		h.o.HomeURL = "/"
	}
	if h.o.Wait <= 0 {
		h.o.Wait = 5 * time.Second
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+p, h.list)
	mux.HandleFunc("GET "+p+"/{$}", h.list)
	mux.HandleFunc("GET "+p+"/{id}", h.show)
	mux.HandleFunc("GET "+p+"/{id}/html", h.html)
	mux.HandleFunc("GET "+p+"/{id}/raw", h.raw)
	mux.HandleFunc("GET "+p+"/"+styleName, h.style)
	if o.Send != nil {
		mux.HandleFunc("POST "+p+"/send", h.send)
	}
	h.o.Prefix = p
	h.o.Stylesheets = append(slices.Clone(h.o.Stylesheets), p+"/"+styleName)
	return mux, nil
}

type handler struct {
	s   *Server
	o   HandlerOptions
	log *slog.Logger
}

type pageView struct {
	SiteName, HomeURL, Prefix string
	Stylesheets               []string
	Title                     string
	CanSend                   bool
	Notice, Error             string
	Messages                  []Message
	Message                   *Message
	Segments                  []segment
	Links                     []string
	Sandbox                   string
}

// segment is a piece of a text body: plain text, or a link when URL is set.
type segment struct {
	Text, URL string
}

func (h *handler) view(title string) pageView {
	return pageView{SiteName: h.o.SiteName, HomeURL: h.o.HomeURL, Prefix: h.o.Prefix, Stylesheets: h.o.Stylesheets,
		Title: title, CanSend: h.o.Send != nil, Sandbox: iframeSandbox}
}

func (h *handler) render(w http.ResponseWriter, status int, name string, v pageView) {
	var buf bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&buf, name, v); err != nil {
		h.log.Error("dev mail page failed", "err", err)
		http.Error(w, "dev mail page failed", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Security-Policy", pageCSP)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	v := h.view("Captured mail")
	v.Messages = h.s.Messages()
	switch r.URL.Query().Get("sent") {
	case "queued":
		v.Notice = "The test mail is in the outbox; it appears here once delivered (reload the page)."
	case "failed":
		v.Error = "The test mail could not be queued; the gateway's log says why."
	}
	h.render(w, http.StatusOK, "list.html", v)
}

// message is the message of the request's {id}, or a 404 page.
func (h *handler) message(w http.ResponseWriter, r *http.Request) (Message, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err == nil {
		if m, ok := h.s.Message(id); ok {
			return m, true
		}
	}
	v := h.view("Message not found")
	v.Error = "No such message: only the last messages are kept, and none survive a restart."
	h.render(w, http.StatusNotFound, "list.html", v)
	return Message{}, false
}

func (h *handler) show(w http.ResponseWriter, r *http.Request) {
	m, ok := h.message(w, r)
	if !ok {
		return
	}
	v := h.view(m.Subject)
	if v.Title == "" {
		v.Title = "(no subject)"
	}
	v.Message = &m
	v.Segments, v.Links = linkify(m.Text)
	h.render(w, http.StatusOK, "message.html", v)
}

// html serves the HTML body as a sandboxed document, with a base target
// so that its links replace the whole page rather than the frame.
func (h *handler) html(w http.ResponseWriter, r *http.Request) {
	m, ok := h.message(w, r)
	if !ok {
		return
	}
	body := m.HTML
	if body == "" {
		body = "<p>This message has no HTML part.</p>"
	}
	const base = `<base target="_top">`
	if i := strings.Index(strings.ToLower(body), "<head>"); i >= 0 {
		body = body[:i+len("<head>")] + base + body[i+len("<head>"):]
	} else {
		body = base + body
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Security-Policy", htmlCSP)
	hd.Set("X-Frame-Options", "SAMEORIGIN")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write([]byte(body))
}

func (h *handler) style(w http.ResponseWriter, _ *http.Request) {
	b, _ := templates.ReadFile("static/capture.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b)
}

// raw serves the message source as plain text, never interpreted.
func (h *handler) raw(w http.ResponseWriter, r *http.Request) {
	m, ok := h.message(w, r)
	if !ok {
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(m.Raw)
}

func (h *handler) send(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return
	}
	before := 0
	if ms := h.s.Messages(); len(ms) > 0 {
		before = ms[0].ID
	}
	if err := h.o.Send(r.Context()); err != nil {
		h.log.Error("dev mail: test mail not queued", "err", err)
		http.Redirect(w, r, h.o.Prefix+"?sent=failed", http.StatusSeeOther)
		return
	}
	// The outbox delivers at once when notified; wait a little for it,
	// so that the press usually lands on the new message.
	deadline := time.Now().Add(h.o.Wait)
	for time.Now().Before(deadline) && r.Context().Err() == nil {
		if ms := h.s.Messages(); len(ms) > 0 && ms[0].ID > before {
			http.Redirect(w, r, h.o.Prefix+"/"+strconv.Itoa(ms[0].ID), http.StatusSeeOther)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	http.Redirect(w, r, h.o.Prefix+"?sent=queued", http.StatusSeeOther)
}

// sameOrigin reports whether the browser says r comes from the page's own
// origin: Sec-Fetch-Site same-origin, or else an Origin header naming the
// request's host. A request with neither (not a browser) is refused too.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		return s == "same-origin"
	}
	o, err := url.Parse(r.Header.Get("Origin"))
	return err == nil && o.Host != "" && o.Host == r.Host
}

var linkRE = regexp.MustCompile(`https?://[^\s<>"'()]+`)

// linkify splits text into plain pieces and http(s) links, and returns the
// distinct links too.
func linkify(text string) ([]segment, []string) {
	var segs []segment
	var links []string
	seen := map[string]bool{}
	last := 0
	for _, loc := range linkRE.FindAllStringIndex(text, -1) {
		u := strings.TrimRight(text[loc[0]:loc[1]], ".,;:!?")
		end := loc[0] + len(u)
		if _, err := url.Parse(u); err != nil {
			continue
		}
		segs = append(segs, segment{Text: text[last:loc[0]]}, segment{Text: u, URL: u})
		last = end
		if !seen[u] {
			seen[u] = true
			links = append(links, u)
		}
	}
	segs = append(segs, segment{Text: text[last:]})
	return segs, links
}
