package crmclient

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/crmgate/crmgate/dataverse"
)

// CachedDirectory is a Directory whose contact reads for session
// revalidation (ContactSnapshot) go through a ContactCache, so that
// every session of one contact shares one request per cache TTL. Sign-ins
// (ContactByID, FindContacts) still always ask Dataverse. UpdateContact
// invalidates the contact's cached snapshot. Build it with
// NewCachedDirectory; it is safe for concurrent use.
type CachedDirectory struct {
	*Directory
	cache *ContactCache
}

// NewCachedDirectory returns d with cache answering ContactSnapshot. The
// cache must read contacts with the same web-role model as d, and should
// be built with MaxStale 0: a snapshot past its TTL is then never served,
// so an outage shows as dataverse.ErrUnavailable and the session's
// own grace period applies (a stale snapshot is refused either way).
func NewCachedDirectory(d *Directory, cache *ContactCache) *CachedDirectory {
	return &CachedDirectory{Directory: d, cache: cache}
}

// ContactSnapshot returns contact id with
// columns and its active web roles, from the cache when it holds a fresh
// snapshot, else in one request shared by concurrent callers. columns the
// cache was not built with are read directly, uncached. The returned
// contact is the caller's own. A stale snapshot (Dataverse unreachable
// past the TTL) is not returned: the error wraps
// dataverse.ErrUnavailable.
func (cd *CachedDirectory) ContactSnapshot(ctx context.Context, id string, columns []string) (*dataverse.Contact, error) {
	if slices.ContainsFunc(columns, func(c string) bool { return !slices.Contains(cd.cache.columns, c) }) {
		return cd.ContactByID(ctx, id, columns)
	}
	g, err := contactGUID("contact snapshot", id)
	if err != nil {
		return nil, err
	}
	if err := checkColumns(columns); err != nil {
		return nil, err
	}
	ct, stale, err := cd.cache.Get(ctx, g)
	if err != nil {
		return nil, directoryError("contact snapshot", err, true)
	}
	if stale {
		return nil, fmt.Errorf("crmclient: directory: contact snapshot of %s is stale: %w: %w", strings.ToLower(g.String()), dataverse.ErrUnavailable, ErrUnavailable)
	}
	return toSnapshot(ct, columns, true)
}

// UpdateContact is Directory.UpdateContact that then drops the contact's
// cached snapshot, whatever the outcome, so the next revalidation reads
// what Dataverse now holds.
func (cd *CachedDirectory) UpdateContact(ctx context.Context, id string, columns map[string]any, etag string) error {
	err := cd.Directory.UpdateContact(ctx, id, columns, etag)
	if g, perr := ParseGUID(id); perr == nil {
		cd.cache.Invalidate(g)
	}
	return err
}

// InvalidateContact drops the cached snapshot of contact id (a GUID; any
// other string is ignored), so the next ContactSnapshot asks Dataverse:
// the Dataverse webhook reported the contact changed.
func (cd *CachedDirectory) InvalidateContact(id string) {
	if g, err := ParseGUID(id); err == nil {
		cd.cache.Invalidate(g)
	}
}

// CacheStats returns the contact cache's statistics (CacheReporter), for
// the console's Dataverse page.
func (cd *CachedDirectory) CacheStats() dataverse.CacheStats { return cd.cache.CacheStats() }
