package crmclient

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/crmgate/crmgate/dataverse"
)

// ContactCache serves contact snapshots (typed columns, a fixed set of extra
// columns and the active web roles) through a SnapshotCache: within the TTL
// no request reaches Dataverse, concurrent lookups of one contact share one
// request, and while Dataverse is unavailable a snapshot up to MaxStale old
// is served (stale = true). Snapshots are shared between callers: treat them
// as read-only. The zero value is not usable; build it with NewContactCache.
type ContactCache struct {
	client  *Client
	columns []string
	model   WebRoleModel
	cache   *SnapshotCache[*Contact]
}

// NewContactCache builds a cache of contacts read with GetContact(columns,
// model). columns is the union of every extra column the gateway will
// forward; a snapshot always carries all of them, so one cached entry
// serves every route. opts.Name defaults to "contact".
func NewContactCache(c *Client, columns []string, model WebRoleModel, opts CacheOptions) (*ContactCache, error) {
	if c == nil {
		return nil, errors.New("crmclient: NewContactCache: nil client")
	}
	if opts.Name == "" {
		opts.Name = "contact"
	}
	sc, err := NewSnapshotCache[*Contact](opts)
	if err != nil {
		return nil, err
	}
	cols := slices.Clone(columns)
	slices.Sort(cols)
	return &ContactCache{client: c, columns: slices.Compact(cols), model: model, cache: sc}, nil
}

// Get returns the snapshot of contact id. stale reports a snapshot served
// because Dataverse could not be asked (see SnapshotCache.Get). A contact
// that no longer exists is an error wrapping ErrNotFound, never a snapshot.
func (cc *ContactCache) Get(ctx context.Context, id GUID) (c *Contact, stale bool, err error) {
	if id.IsZero() {
		return nil, false, errors.Join(ErrInvalidArgument, errors.New("crmclient: contact id is the zero GUID"))
	}
	return cc.cache.Get(ctx, strings.ToLower(id.String()), func(ctx context.Context) (*Contact, error) {
		return cc.client.GetContact(ctx, id, cc.columns, cc.model)
	})
}

// CacheStats returns the counters of the underlying SnapshotCache; it
// satisfies CacheReporter.
func (cc *ContactCache) CacheStats() dataverse.CacheStats { return cc.cache.CacheStats() }

// Invalidate drops the snapshot of contact id; the next Get asks Dataverse.
func (cc *ContactCache) Invalidate(id GUID) { cc.cache.Invalidate(strings.ToLower(id.String())) }
