package proxy

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/patrickmn/go-cache"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/dataverse"
	"github.com/crmgate/crmgate/policies"
)

// Session is what the session cookie carries. It is encrypted and
// authenticated; the user snapshot (names, roles) is refreshed from the
// store at every security-stamp check and at every contact revalidation,
// and after a profile save, so proxied requests need no store access
// between checks.
type Session struct {
	ID         string   `json:"sid"`
	UserID     string   `json:"uid"`
	Stamp      string   `json:"stm"`
	AuthMethod string   `json:"amr"`
	AuthTime   int64    `json:"iat"` // unix seconds of sign-in; bounds the absolute lifetime
	LastSeen   int64    `json:"lst"` // unix seconds; bounds the idle lifetime
	CheckedAt  int64    `json:"chk"` // unix seconds of the last security-stamp check
	Remember   bool     `json:"rem,omitempty"`
	Username   string   `json:"usr"`
	Email      string   `json:"eml,omitempty"`
	EmailOK    bool     `json:"emv,omitempty"` // the email address is confirmed
	Name       string   `json:"nam,omitempty"`
	Roles      []string `json:"rol,omitempty"`
	// Contact is the bound contact's snapshot: its id, name, the columns
	// any route may forward (the policy's union) and its web-role names, in
	// dataverse.Contact's compact JSON form; nil when the user is not bound.
	Contact *dataverse.Contact `json:"ct,omitempty"`
	// ContactAt is when Dataverse last confirmed the snapshot (unix seconds).
	ContactAt int64 `json:"cat,omitempty"`
	// Rev is the revision of what the identity headers carry (the user
	// snapshot and the contact): every change gives a new one (bump), and
	// the signed token is reused only within one revision.
	Rev uint64 `json:"rev,omitempty"`
	// MustChange says the user must change the password before reaching
	// anything else (the account's must-change flag, or the contact's
	// password-change column at sign-in); see forcePasswordChange. Once
	// set it stays until the change page re-issues the session.
	MustChange bool `json:"mcp,omitempty"`
	// UserAt is the account's last change (its updated_at, unix
	// milliseconds) that the user snapshot reflects; a change the session
	// feed reports after it makes the next request check the stamp. Zero
	// (a cookie from before the feed) takes any reported change as newer.
	UserAt int64 `json:"uat,omitempty"`
}

// errSessionInvalid is any cookie that does not decode to a session. It is
// not shown to users: a bad cookie is treated as no session.
var errSessionInvalid = errors.New("proxy: session cookie invalid")

// sessionCodec encodes and decodes session cookie values with key
// rotation: the first key encodes, every key decodes.
type sessionCodec struct {
	// enc encodes with the newest key and no length limit: what fits the
	// browser is decided by writeSession, which splits long values across
	// cookies and reports a *SessionTooLargeError beyond maxSessionChunks.
	enc securecookie.Codec
	// codecs decode, newest key first, values of at most maxSessionValue
	// bytes (the reassembled parts of a chunked session).
	codecs []securecookie.Codec
	name   string
}

// deriveKey stretches one configured secret into a purpose-bound key with
// HKDF-SHA256, so one secret yields independent MAC, encryption and CSRF keys.
func deriveKey(secret []byte, purpose string, n int) []byte {
	k, err := hkdf.Key(sha256.New, secret, nil, "crmgate "+purpose, n)
	if err != nil { // only for n larger than 255*32 bytes
		panic(fmt.Sprintf("proxy: hkdf: %v", err))
	}
	return k
}

func newSessionCodec(name string, secrets [][]byte, maxAge time.Duration) (*sessionCodec, error) {
	if len(secrets) == 0 {
		return nil, errors.New("proxy: no cookie keys")
	}
	c := &sessionCodec{name: name}
	build := func(s []byte, maxLength int) *securecookie.SecureCookie {
		sc := securecookie.New(deriveKey(s, "session mac", 32), deriveKey(s, "session enc", 32))
		sc.SetSerializer(securecookie.JSONEncoder{})
		sc.MaxAge(int(maxAge / time.Second))
		sc.MaxLength(maxLength) // 0: no limit
		return sc
	}
	c.enc = build(secrets[0], 0)
	for _, s := range secrets {
		c.codecs = append(c.codecs, build(s, maxSessionValue))
	}
	return c, nil
}

// encode returns the cookie value of s, however long; see writeSession.
func (c *sessionCodec) encode(s *Session) (string, error) {
	return c.enc.Encode(c.name, s)
}

// decode authenticates, decrypts and parses a cookie value. Any failure,
// including one made by a key no longer configured, is errSessionInvalid.
func (c *sessionCodec) decode(value string) (*Session, error) {
	var s Session
	if err := securecookie.DecodeMulti(c.name, value, &s, c.codecs...); err != nil {
		return nil, errSessionInvalid
	}
	if s.ID == "" || s.UserID == "" || s.AuthTime == 0 {
		return nil, errSessionInvalid
	}
	return &s, nil
}

// sessionPolicy holds the lifetime rules of sessions.
type sessionPolicy struct {
	idle, absolute, remember, stampCheck time.Duration
}

// expired reports whether s has outlived its idle or absolute lifetime at now.
func (p sessionPolicy) expired(s *Session, now time.Time) bool {
	abs, idle := p.absolute, p.idle
	if s.Remember {
		abs, idle = p.remember, p.remember
	}
	t := now.Unix()
	return t-s.AuthTime >= int64(abs/time.Second) || t-s.LastSeen >= int64(idle/time.Second) || s.AuthTime > t+60
}

// expiresAt is the latest time s can live if it stays active.
func (p sessionPolicy) expiresAt(s *Session) time.Time {
	abs := p.absolute
	if s.Remember {
		abs = p.remember
	}
	return time.Unix(s.AuthTime, 0).Add(abs)
}

// refreshDue reports whether the cookie should be re-issued to push the idle
// deadline forward. Re-issuing on every request would cost an encryption per
// request; once per minute (or a tenth of the idle lifetime) keeps the idle
// deadline accurate to that granularity.
func (p sessionPolicy) refreshDue(s *Session, now time.Time) bool {
	g := min(p.idle/10, time.Minute)
	return now.Unix()-s.LastSeen >= int64(g/time.Second)
}

// sessionCookie builds the main session cookie for value. Its companions,
// when the value needs them, carry the same attributes.
func (srv *Server) sessionCookie(value string, s *Session) *http.Cookie {
	c := &http.Cookie{
		Name:     srv.cookieName,
		Value:    value,
		Path:     "/",
		Domain:   srv.opts.CookieDomain,
		HttpOnly: true,
		Secure:   srv.secure,
		SameSite: http.SameSiteLaxMode,
	}
	if s.Remember {
		c.Expires = srv.sessions.expiresAt(s)
		c.MaxAge = max(1, int(c.Expires.Sub(srv.now())/time.Second))
	}
	return c
}

// clearSessionCookie deletes the session cookie and every companion slot
// in the browser. The request is not at hand for every caller, so all
// slots are deleted rather than those the request carries; deleting a
// cookie the browser does not hold is harmless, and sessions end rarely.
func (srv *Server) clearSessionCookie(w http.ResponseWriter) {
	base := &http.Cookie{Name: srv.cookieName, Path: "/", Domain: srv.opts.CookieDomain,
		HttpOnly: true, Secure: srv.secure, SameSite: http.SameSiteLaxMode}
	http.SetCookie(w, expiredCookie(base, srv.cookieName))
	for n := 2; n <= maxSessionChunks; n++ {
		http.SetCookie(w, expiredCookie(base, companionName(srv.cookieName, n)))
	}
}

// sessionLoad is a session on its way through the pipeline's session
// steps: read, stamp check, contact revalidation, save. A step that ends the
// session sets sess to nil; later steps then do nothing.
type sessionLoad struct {
	sess  *Session
	value string         // the cookie value it was decoded from: the session cache's key
	entry *cachedSession // the cache entry of value
	now   time.Time
	dirty bool // the session changed: the cookie must be re-issued
}

// end ends the loaded session: its cache entry is dropped, the cookie
// cleared, and reason counted.
func (srv *Server) endLoaded(w http.ResponseWriter, ls *sessionLoad, reason string) {
	srv.sessionCache.drop(ls.value)
	srv.endSession(w, reason)
	ls.sess = nil
}

// endRevoked ends a session whose contact no longer lets it in, and
// remembers it on this replica as revoked until it would have expired: a
// copy of its cookie replayed later is refused at readSession, without
// asking Dataverse again or writing another audit row each time.
func (srv *Server) endRevoked(w http.ResponseWriter, ls *sessionLoad) {
	srv.revoked.add(ls.sess.ID, srv.sessions.expiresAt(ls.sess), ls.now)
	srv.endLoaded(w, ls, "contact_revoked")
}

// loadSession runs the pipeline's session steps for a gateway page (the
// proxied pipeline calls them one by one, in the same order): it returns
// the request's session, or nil when it has none or its session is
// invalid, expired, revoked or no longer allowed. An error means a store
// could not be asked; the request must not proceed, and the session is kept.
func (srv *Server) loadSession(w http.ResponseWriter, r *http.Request) (*Session, error) {
	ls := srv.readSession(w, r)
	if err := srv.checkSessionStamp(w, r, &ls); err != nil {
		return nil, err
	}
	if err := srv.revalidateSessionContact(w, r, &ls); err != nil {
		return nil, err
	}
	if err := srv.saveSession(w, r, &ls); err != nil {
		return nil, err
	}
	return ls.sess, nil
}

// readSession is the first session step: the session cookie decoded
// (through the session cache), within its idle and absolute lifetimes, and
// not signed out through this replica. ls.sess is nil when the request has
// no such session; an invalid, expired or revoked cookie is cleared. It is
// returned by value, so that the hot path allocates nothing for it.
func (srv *Server) readSession(w http.ResponseWriter, r *http.Request) sessionLoad {
	ls := sessionLoad{now: srv.now()}
	value, err := sessionValue(r.Header, srv.cookieName)
	if err != nil { // parts missing or unexpected: an invalid cookie
		srv.endSession(w, "invalid")
		return ls
	}
	if value == "" {
		return ls
	}
	sess, entry, err := srv.sessionCache.get(value, srv.codec)
	if err != nil {
		srv.endSession(w, "invalid")
		return ls
	}
	ls.sess, ls.value, ls.entry = sess, value, entry
	switch {
	case srv.sessions.expired(sess, ls.now):
		srv.endLoaded(w, &ls, "expired")
	case srv.revoked.has(sess.ID, ls.now):
		srv.endLoaded(w, &ls, "revoked")
	}
	return ls
}

// checkSessionStamp is the second session step, due every
// StampCheckInterval: the user must still exist, be active and carry the
// session's security stamp, and the session must not have been signed out
// on another replica; the user snapshot (names, roles) is refreshed from
// the store. An error means the store could not answer: the request gets a
// 503 and the session is kept.
func (srv *Server) checkSessionStamp(w http.ResponseWriter, r *http.Request, ls *sessionLoad) error {
	sess := ls.sess
	if sess == nil || (ls.now.Unix()-sess.CheckedAt < int64(srv.sessions.stampCheck/time.Second) &&
		!srv.changedUsers.after(sess.UserID, sess.UserAt)) {
		return nil
	}
	u, err := srv.users.UserByID(r.Context(), sess.UserID)
	switch {
	case errors.Is(err, authz.ErrNotFound):
		srv.endLoaded(w, ls, "revoked")
		return nil
	case err != nil:
		return errSessionUncheckable(err)
	case u.SecurityStamp != sess.Stamp || u.Status != authz.StatusActive:
		srv.endLoaded(w, ls, "revoked")
		return nil
	}
	revoked, err := srv.sessionStore.SessionRevoked(r.Context(), sess.ID)
	if err != nil {
		return errSessionUncheckable(err)
	}
	if revoked {
		srv.revoked.add(sess.ID, srv.sessions.expiresAt(sess), ls.now)
		srv.endLoaded(w, ls, "revoked")
		return nil
	}
	sess.setUser(u)
	sess.CheckedAt = ls.now.Unix()
	ls.dirty = true
	return nil
}

// errSessionUncheckable is the answer when a store could not be asked about
// a session: try again shortly; the session is kept.
func errSessionUncheckable(err error) error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Title: "Temporarily unavailable",
		Message: "Your session could not be checked just now. Please try again shortly.", RetryAfter: 5 * time.Second, Err: err}
}

// ContactRevalidator re-checks a signed-in user's contact against
// Dataverse. *signin.Service satisfies it; see
// signin.Service.RevalidateContact.
type ContactRevalidator interface {
	RevalidateContact(ctx context.Context, userID, contactID string, columns []string) (*authz.User, *dataverse.Contact, error)
}

// revalidateSessionContact is the third session step, due once the contact
// snapshot is ContactRevalidateInterval old, or at once when the Dataverse
// webhook reported the contact changed after the snapshot (through any
// replica: the session feed): Dataverse is asked again (the sign-in
// check). A contact reported deleted ends the session without asking. The session ends when the contact was deactivated, the
// user unbound or no longer allowed, or Dataverse has been unreachable for
// longer than the grace period. While Dataverse is unreachable within the
// grace period the old snapshot is kept (counted and logged). A fresh
// snapshot, and the account's fields it pulled, replace the session's. An
// error means the account store could not answer: the request gets a 503
// and the session is kept.
func (srv *Server) revalidateSessionContact(w http.ResponseWriter, r *http.Request, ls *sessionLoad) error {
	sess := ls.sess
	if sess == nil || sess.Contact == nil {
		return nil
	}
	changed, deleted := srv.changedContacts.after(sess.Contact.ID, sess.ContactAt)
	if deleted {
		// Reported deleted by the Dataverse webhook: nothing to ask.
		srv.log.Info("session ended: its contact was deleted in Dataverse", "request_id", requestID(r.Context()), "user_id", sess.UserID, "contact_id", sess.Contact.ID)
		if srv.hook != nil {
			srv.hook.Audit.Record(r.Context(), audit.Event{Type: eventHookSessionEnded, Actor: hookActor, UserID: sess.UserID, Detail: "contact_deleted " + sess.Contact.ID})
		}
		srv.endRevoked(w, ls)
		return nil
	}
	if srv.revalidator == nil || !changed && ls.now.Sub(time.Unix(sess.ContactAt, 0)) < srv.opts.ContactRevalidateInterval {
		return nil
	}
	rid := requestID(r.Context())
	u, c, err := srv.revalidator.RevalidateContact(r.Context(), sess.UserID, sess.Contact.ID, srv.contactColumns)
	switch {
	case errors.Is(err, authz.ErrStoreUnavailable):
		srv.log.Warn("session kept: the account store could not answer its contact revalidation", "request_id", rid, "user_id", sess.UserID, "err", err)
		return errSessionUncheckable(err)
	case errors.Is(err, dataverse.ErrUnavailable):
		age := ls.now.Sub(time.Unix(sess.ContactAt, 0))
		if age >= srv.opts.ContactRevalidateInterval+srv.opts.ContactGrace {
			srv.log.Warn("session ended: Dataverse unreachable beyond the grace period", "request_id", rid, "user_id", sess.UserID, "snapshot_age", age.String())
			srv.endLoaded(w, ls, "dataverse_unavailable")
			return nil
		}
		srv.metrics.sessions.WithLabelValues("grace").Inc()
		srv.log.Warn("Dataverse unreachable: session continues on its contact snapshot", "request_id", rid, "user_id", sess.UserID, "snapshot_age", age.String(), "err", err)
		return nil
	case err != nil || c == nil:
		reason := "contact_revoked"
		if err != nil && !errors.Is(err, signin.ErrRefused) && !errors.Is(err, authz.ErrNotFound) {
			reason = "contact_error"
		}
		srv.log.Info("session ended by contact revalidation", "request_id", rid, "user_id", sess.UserID, "reason", reason)
		if reason == "contact_revoked" {
			srv.endRevoked(w, ls)
		} else {
			srv.endLoaded(w, ls, reason)
		}
		return nil
	}
	if u != nil {
		sess.setUser(u)
	}
	sess.setContact(srv.boundedContact(r, sess.UserID, c))
	sess.ContactAt = ls.now.Unix()
	ls.dirty = true
	return nil
}

// saveSession is the last session step: the cookie is re-issued when the
// session changed or its idle deadline must move. A session that no longer
// fits the session cookies ends.
func (srv *Server) saveSession(w http.ResponseWriter, r *http.Request, ls *sessionLoad) error {
	sess := ls.sess
	if sess == nil || !ls.dirty && !srv.sessions.refreshDue(sess, ls.now) {
		return nil
	}
	sess.LastSeen = ls.now.Unix()
	if err := srv.writeSessionFor(w, r, sess); err != nil {
		if tooLarge, ok := errors.AsType[*SessionTooLargeError](err); ok {
			// A refreshed contact snapshot outgrew the cookies. Keeping
			// the old cookie would ask Dataverse again on every request:
			// end the session, and tell the operator what to change.
			srv.log.Error("session ended: it no longer fits the session cookies", "request_id", requestID(r.Context()),
				"user_id", sess.UserID, "bytes", tooLarge.Size, "limit", tooLarge.Limit, "err", tooLarge.Error())
			srv.endLoaded(w, ls, "too_large")
		}
		return err
	}
	// A client that keeps sending this same cookie (a script, or a
	// browser whose Set-Cookie is still in flight) is not checked or
	// re-issued again until the next interval.
	ls.entry.update(sess)
	return nil
}

// cookieValue returns the value of the first cookie called name in the
// Cookie headers of h, or "". Unlike http.Request.Cookie it parses nothing
// else and allocates nothing. The session cookie, which may be split in
// parts, is read with sessionValue instead.
func cookieValue(h http.Header, name string) string {
	for _, line := range h["Cookie"] {
		for len(line) > 0 {
			k, v, rest, ok := nextCookie(line)
			if ok && k == name {
				return v
			}
			line = rest
		}
	}
	return ""
}

// sessionCache keeps decoded sessions by cookie value (the reassembled
// value of a chunked session: a changed part is a different key, which
// must decode again) for a short while, so
// the authenticated decryption and JSON decoding of the cookie run about
// once a minute per cookie rather than on every request. Only cookies that
// decoded are kept, so its size is bounded by the live sessions (each
// session's cookie changes at most once a minute, and entries expire after
// a minute). All lifetime, revocation and stamp checks still run on every
// request against the cached values.
type sessionCache struct{ c *cache.Cache }

func newSessionCache() sessionCache {
	return sessionCache{c: cache.New(time.Minute, 2*time.Minute)}
}

type cachedSession struct {
	mu sync.Mutex
	s  Session
}

// get returns a private copy of the session of value, decoding it on a miss.
func (sc sessionCache) get(value string, codec *sessionCodec) (*Session, *cachedSession, error) {
	if v, ok := sc.c.Get(value); ok {
		e := v.(*cachedSession)
		e.mu.Lock()
		s := e.s // Roles is never modified in place, so sharing it is safe
		e.mu.Unlock()
		return &s, e, nil
	}
	s, err := codec.decode(value)
	if err != nil {
		return nil, nil, err
	}
	e := &cachedSession{s: *s}
	sc.c.SetDefault(value, e)
	return s, e, nil
}

func (sc sessionCache) drop(value string) { sc.c.Delete(value) }

func (e *cachedSession) update(s *Session) {
	e.mu.Lock()
	e.s = *s
	e.mu.Unlock()
}

// writeSessionFor encodes sess into the session cookie on w, split across
// companion cookies when it is too long for one (see cookie_chunks.go), and
// deletes the companions of a longer session that r carries (every unused
// companion slot when r is nil). A session that does not fit
// maxSessionChunks cookies sets nothing and returns an *Error wrapping a
// *SessionTooLargeError: a friendly page for the user, the cause for the log.
func (srv *Server) writeSessionFor(w http.ResponseWriter, r *http.Request, sess *Session) error {
	v, err := srv.codec.encode(sess)
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	cookies, err := sessionCookieSet(srv.sessionCookie("", sess), v, r, sess.Contact != nil)
	if err != nil {
		if tooLarge, ok := errors.AsType[*SessionTooLargeError](err); ok {
			return errSessionTooLarge(tooLarge)
		}
		return err
	}
	for _, c := range cookies {
		http.SetCookie(w, c)
	}
	return nil
}

// endSession clears the cookie and counts why the session ended.
func (srv *Server) endSession(w http.ResponseWriter, reason string) {
	srv.clearSessionCookie(w)
	srv.metrics.sessions.WithLabelValues(reason).Inc()
}

// setUser copies what identity headers need from u into s. When anything
// changed, the session gets a new revision, so that the next proxied
// request carries a token and headers with the new values.
func (s *Session) setUser(u *authz.User) {
	// Not part of the identity headers: no new revision for them.
	s.MustChange = s.MustChange || u.MustChangePassword
	s.UserAt = max(s.UserAt, u.UpdatedAt.UnixMilli())
	name := u.Name()
	if s.Username == u.Username && s.Email == u.Email && s.Name == name && s.EmailOK == u.EmailConfirmed && slices.Equal(s.Roles, u.Roles) {
		return
	}
	s.Username, s.Email, s.Name = u.Username, u.Email, name
	s.EmailOK = u.EmailConfirmed
	s.Roles = append([]string(nil), u.Roles...)
	s.bump()
}

// setContact replaces the contact snapshot with c (nil: unbound), with a
// new revision when anything changed.
func (s *Session) setContact(c *dataverse.Contact) {
	if sameContact(s.Contact, c) {
		return
	}
	s.Contact = c
	s.bump()
}

// sameContact reports whether a and b carry the same snapshot: what the
// session cookie keeps of a contact.
func sameContact(a, b *dataverse.Contact) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ID == b.ID && a.LogicalName == b.LogicalName && a.Name == b.Name && slices.Equal(a.Roles, b.Roles) &&
		reflect.DeepEqual(normalColumns(a.Columns), normalColumns(b.Columns))
}

// normalColumns makes an empty column map compare equal to a nil one.
func normalColumns(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	return m
}

// bump gives s a new revision: a random, non-zero value. Random rather
// than counted, so that two replicas changing one session at once cannot
// give two different snapshots the same revision.
func (s *Session) bump() {
	for s.Rev = mrand.Uint64(); s.Rev == 0; s.Rev = mrand.Uint64() {
	}
}

// subject is the session as policies see it; nil for anonymous requests.
// Roles are the local roles plus the contact's web-role names.
func (s *Session) subject() *policies.Subject {
	if s == nil {
		return nil
	}
	sub := &policies.Subject{ID: s.UserID, Username: s.Username, Email: s.Email, EmailVerified: s.EmailOK, Name: s.Name,
		Roles: s.roles(), AuthMethod: s.AuthMethod}
	if c := s.Contact; c != nil {
		sub.Contact = c
	}
	return sub
}

// roles returns the local roles followed by the contact's web-role names
// not already among them.
func (s *Session) roles() []string {
	if s.Contact == nil || len(s.Contact.Roles) == 0 {
		return s.Roles
	}
	out := slices.Clone(s.Roles)
	for _, r := range s.Contact.Roles {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// revokedSessions remembers sessions signed out through this replica, found
// revoked in the store, or listed by the session feed (WatchSessions),
// until they would have expired, so a copied cookie is refused at once.
type revokedSessions struct {
	mu    sync.RWMutex
	m     map[string]time.Time // session ID -> when its cookie expires anyway
	sweep time.Time
}

func (r *revokedSessions) has(sid string, now time.Time) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	until, ok := r.m[sid]
	return ok && now.Before(until)
}

func (r *revokedSessions) add(sid string, until, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[sid] = until
	if now.Sub(r.sweep) > time.Hour {
		for k, v := range r.m {
			if !now.Before(v) {
				delete(r.m, k)
			}
		}
		r.sweep = now
	}
}

// SessionFeed lists what changed about sessions through any replica since
// a time (by the writers' clocks). *store.DB satisfies it.
type SessionFeed interface {
	SessionChangesSince(ctx context.Context, since time.Time) (authz.SessionChanges, error)
}

// SessionFeedInterval is how often WatchSessions polls the feed: the bound
// on how long a sign-out or an account change made through another replica
// goes unnoticed here.
const SessionFeedInterval = time.Second

// sessionFeedOverlap is how far back each poll reaches before the previous
// one: the replicas' clocks may disagree (and a write may commit late) by
// this much without a change being missed. A change missed anyway is
// honoured at the session's next stamp check.
const sessionFeedOverlap = 10 * time.Second

// WatchSessions polls the session feed every interval (SessionFeedInterval
// when zero) until ctx ends: sessions signed out through another replica
// are refused from then on, and the sessions of users changed through
// another replica get their stamp check at their next request; the
// sessions of contacts the Dataverse webhook reported changed (through any
// replica) revalidate their contact at their next request, and the
// contact's cached snapshot is dropped. A failed
// poll is logged and retried; the stamp check still bounds what it misses.
// Without a SessionFeed it returns at once.
func (srv *Server) WatchSessions(ctx context.Context, interval time.Duration) error {
	if srv.sessionFeed == nil {
		return nil
	}
	if interval <= 0 {
		interval = SessionFeedInterval
	}
	since := srv.now().Add(-sessionFeedOverlap)
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		now := srv.now()
		ch, err := srv.sessionFeed.SessionChangesSince(ctx, since)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			if !failing {
				srv.log.Warn("session feed: poll failed; sign-outs and account changes on other replicas wait for the stamp check", "err", err)
			}
			failing = true
		default:
			if failing {
				srv.log.Info("session feed: polling again")
			}
			failing = false
			for _, r := range ch.Revoked {
				srv.revoked.add(r.ID, r.ExpiresAt, now)
			}
			for _, u := range ch.Users {
				srv.changedUsers.mark(u.UserID, u.At)
			}
			srv.changedUsers.forget(now.Add(-srv.sessions.stampCheck - sessionFeedOverlap))
			for _, c := range ch.Contacts {
				// The cached snapshot goes first, so that a session that
				// sees the mark reads Dataverse.
				if srv.contactCache != nil && srv.changedContacts.newer(c.ContactID, c.At, c.Deleted) {
					srv.contactCache.InvalidateContact(c.ContactID)
				}
				srv.changedContacts.mark(c.ContactID, c.At, c.Deleted)
			}
			srv.changedContacts.forget(now.Add(-srv.opts.ContactRevalidateInterval - sessionFeedOverlap))
			if ch.Truncated {
				srv.log.Warn("session feed: more changes than one poll reads; the rest wait for the stamp check",
					"revoked", len(ch.Revoked), "users", len(ch.Users), "contacts", len(ch.Contacts))
			}
			since = now.Add(-sessionFeedOverlap)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// changedUsers remembers, per user, when the account last changed through
// any replica (the session feed), so that a session whose snapshot is
// older (Session.UserAt) gets its stamp check at once instead of at
// StampCheckInterval.
type changedUsers struct {
	mu sync.RWMutex
	m  map[string]int64 // user ID -> unix milliseconds of the latest change
}

// after reports whether userID changed after the account version userAt
// (unix milliseconds of its updated_at, which every change advances).
func (c *changedUsers) after(userID string, userAt int64) bool {
	c.mu.RLock()
	at, ok := c.m[userID]
	c.mu.RUnlock()
	return ok && at > userAt
}

func (c *changedUsers) mark(userID string, at time.Time) {
	ms := at.UnixMilli()
	c.mu.Lock()
	if ms > c.m[userID] {
		c.m[userID] = ms
	}
	c.mu.Unlock()
}

// forget drops the changes before cutoff: every session has had its
// regular stamp check since.
func (c *changedUsers) forget(cutoff time.Time) {
	ms := cutoff.UnixMilli()
	c.mu.Lock()
	for k, v := range c.m {
		if v < ms {
			delete(c.m, k)
		}
	}
	c.mu.Unlock()
}

// changedContacts remembers, per contact, when the Dataverse webhook last
// reported it changed (through any replica: the session feed), and whether
// it was deleted, so that a session whose snapshot is older (ContactAt)
// revalidates at once instead of at ContactRevalidateInterval.
type changedContacts struct {
	mu sync.RWMutex
	m  map[string]contactMark // lower-case contact ID -> latest change
}

type contactMark struct {
	at      int64 // unix milliseconds
	deleted bool
}

// after reports whether contactID was reported changed after the snapshot
// confirmed at contactAt (unix seconds: a change in the same second counts
// as after, so it is never missed), and whether it was deleted (which
// holds whenever the snapshot was taken).
func (c *changedContacts) after(contactID string, contactAt int64) (changed, deleted bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.m) == 0 {
		return false, false
	}
	m, ok := c.m[contactID]
	if !ok {
		m, ok = c.m[strings.ToLower(contactID)]
	}
	return ok && m.at >= contactAt*1000, ok && m.deleted
}

// newer reports whether marking contactID (at, deleted) would change what
// is known of it.
func (c *changedContacts) newer(contactID string, at time.Time, deleted bool) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m, ok := c.m[contactID]
	return !ok || at.UnixMilli() > m.at || deleted && !m.deleted
}

func (c *changedContacts) mark(contactID string, at time.Time, deleted bool) {
	ms := at.UnixMilli()
	c.mu.Lock()
	m := c.m[contactID]
	m.at = max(m.at, ms)
	m.deleted = m.deleted || deleted
	c.m[contactID] = m
	c.mu.Unlock()
}

// forget drops the changes before cutoff: every session has revalidated
// its contact since (a deleted contact's sessions too, at the latest).
func (c *changedContacts) forget(cutoff time.Time) {
	ms := cutoff.UnixMilli()
	c.mu.Lock()
	for k, v := range c.m {
		if v.at < ms {
			delete(c.m, k)
		}
	}
	c.mu.Unlock()
}
