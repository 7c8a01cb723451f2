// Package invitations lets a person get an account from an invitation:
// crmgate's own (created through the REST API or `crmgate invitations`)
// or a Power Pages invitation record in Dataverse (adx_invitation).
//
// A crmgate invitation's code is 256 bits from crypto/rand, emailed to the
// invited address and never stored: the store keeps its SHA-256 and looks
// invitations up by it (a hash lookup is no timing oracle for the code).
// Because the code travels only in that mail, redeeming it proves the
// address, and the new account's email counts as confirmed. A Dataverse
// invitation's code is made by Dataverse and may travel by any channel, so
// by default (Options.DataverseProof) redeeming one sends a confirmation
// link to the invited contact's address, and the account exists only once
// that link is followed.
//
// Redemptions are counted in the store: one row per (invitation, number),
// unique, so that of concurrent redemptions of a single-use invitation
// exactly one wins and a group invitation lets exactly its maximum through,
// on SQLite and PostgreSQL, across replicas. A Dataverse redemption is
// written back (count, redeemed contact, status, web roles, account)
// through the outbox in the same transaction as the new account: an
// outage delays it, loses nothing, and a repeated write-back counts once.
package invitations

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"github.com/crmgate/crmgate/authz"
	"github.com/crmgate/crmgate/authz/outbox"
)

// Kind says how often an invitation may be redeemed.
type Kind string

// The kinds of invitation.
const (
	// Single may be redeemed once.
	Single Kind = "single"
	// Group may be redeemed up to its maximum.
	Group Kind = "group"
)

// Limits of an invitation.
const (
	// CodeBytes is the size of a crmgate code: 256 bits.
	CodeBytes = 32
	// MaxRedemptionsLimit is the largest maximum of a group invitation.
	MaxRedemptionsLimit = 100000
	// DefaultTTL is how long an invitation is valid when its creator sets
	// no expiry.
	DefaultTTL = 14 * 24 * time.Hour
	// MaxTTL is the longest an invitation may be valid.
	MaxTTL = 366 * 24 * time.Hour
	// MaxCodeLen is the longest code accepted from a request; Dataverse
	// codes are at most 200 characters (adx_invitationcode String(200)).
	MaxCodeLen = 200
)

// Audit event types of this package. Detail never holds a code.
const (
	EventCreated   = "invitation.created"   // Detail: invitation id, kind, max
	EventResent    = "invitation.resent"    // Detail: invitation id
	EventRevoked   = "invitation.revoked"   // Detail: invitation id
	EventRedeemed  = "invitation.redeemed"  // Detail: source:id and redemption number
	EventRefused   = "invitation.refused"   // Detail: source:id when known, and a Refused* reason
	EventThrottled = "invitation.throttled" // the first refusal of a client address guessing codes
	EventLinked    = "invitation.linked"    // an existing account took an invitation; Detail: source:id
	EventPending   = "invitation.pending"   // a confirmation was mailed before the account is made
	EventMailed    = "invitation.mailed"    // a Dataverse invitation was emailed by crmgate; Detail: its id
)

// Reasons of a refusal, in the audit trail and the log. A person only
// ever sees ErrInvalidCode.
const (
	RefusedMalformed = "malformed"
	RefusedUnknown   = "unknown"
	RefusedExpired   = "expired"
	RefusedRevoked   = "revoked"
	RefusedUsedUp    = "used_up"
	RefusedInactive  = "inactive"
)

// Errors of the package; match them with errors.Is.
var (
	// ErrInvalidCode is every refused code alike: malformed, unknown,
	// expired, revoked or used up, so that the answer is no oracle.
	ErrInvalidCode = errors.New("invitations: invalid or expired invitation")
	// ErrContactBound means the invited contact is bound to another
	// account: redeeming never rebinds it.
	ErrContactBound = errors.New("invitations: the invited contact already has an account")
	// ErrExistingAccount means the invited address or contact belongs to
	// an account: its owner should sign in and link the invitation.
	ErrExistingAccount = errors.New("invitations: the invited person already has an account")
	// ErrLinkRefused means the signed-in account may not take this
	// invitation (bound to another contact, or not the invited address).
	ErrLinkRefused = errors.New("invitations: this account cannot take this invitation")
	// ErrNoSlot is the store's answer when an invitation has no
	// redemption left at the moment of the claim.
	ErrNoSlot = errors.New("invitations: no redemption left")
	// ErrNoDataverse means a Dataverse invitation was presented but no
	// Dataverse is configured.
	ErrNoDataverse = errors.New("invitations: no Dataverse configured")
)

// Invitation is a crmgate invitation as stored. It never holds the code.
type Invitation struct {
	// ID identifies the invitation; safe to show and log.
	ID int64 `json:"id"`
	// Email is the invited address; the code is mailed there.
	Email string `json:"email"`
	// ContactID is the invited contact (lower-case GUID) the new account
	// is bound to (lookup); empty for none.
	ContactID string `json:"contact_id,omitempty"`
	// Kind is Single or Group.
	Kind Kind `json:"kind"`
	// MaxRedemptions is at least 1 (1 for Single).
	MaxRedemptions int `json:"max_redemptions"`
	// Redemptions counts the redemptions so far.
	Redemptions int `json:"redemptions"`
	// Roles are the local roles the new account gets.
	Roles []string `json:"roles"`
	// RedirectURL is where the person goes after redeeming; empty for the
	// site's home. It was validated as a safe redirect when created.
	RedirectURL string `json:"redirect_url,omitempty"`
	// CreatedBy is the actor who created it.
	CreatedBy string `json:"created_by,omitempty"`
	// CodeHash is the hex SHA-256 of the code; never serialised.
	CodeHash  string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// SentAt is when its mail was last enqueued; zero for never.
	SentAt time.Time `json:"sent_at,omitzero"`
	// RevokedAt is when it was revoked; zero when it was not.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Outstanding reports whether inv can still be redeemed at now.
func (inv *Invitation) Outstanding(now time.Time) bool {
	return inv.RevokedAt.IsZero() && now.Before(inv.ExpiresAt) && inv.Redemptions < inv.MaxRedemptions
}

// Claim is one redemption the store records, atomically with the account
// change it causes.
type Claim struct {
	// Invitation is the key: "crmgate:<id>" or "dataverse:<guid>".
	Invitation string
	// LocalID is the crmgate invitation's id, 0 for a Dataverse one. When
	// set, the store checks in the transaction that the invitation is
	// neither revoked nor expired at At and keeps its count.
	LocalID int64
	// Max is the maximum number of redemptions; 0 means no limit.
	Max int
	// Base is how many redemptions were counted elsewhere (Dataverse's
	// adx_redemptions when it was read): the claim's number is above it.
	Base int
	// ContactID is the contact the account is bound to; empty for none.
	// The store refuses (ErrContactBound) when another account than
	// UserID is bound to it.
	ContactID string
	// UserID is the account that redeems: the new one, or the signed-in
	// one that links the invitation.
	UserID string
	// At is the redemption's time.
	At time.Time
	// WriteBack, when not nil, builds an event from the claimed number
	// that the store enqueues in the same transaction (the Dataverse
	// write-back, which must carry the number).
	WriteBack func(n int) (outbox.Event, error)
	// N is set by the store: the redemption's number, from 1.
	N int
}

// Store is what the invitations feature needs from the account store;
// *store.DB implements it on SQLite and PostgreSQL.
type Store interface {
	// CreateInvitation inserts inv (its ID is set) and enqueues events in
	// one transaction. A CodeHash in use gives authz.ErrConflict.
	CreateInvitation(ctx context.Context, inv *Invitation, events ...outbox.Event) error
	// InvitationByHash returns the invitation whose code hashes to hash,
	// in any state, or authz.ErrNotFound.
	InvitationByHash(ctx context.Context, hash string) (*Invitation, error)
	// InvitationByID returns invitation id or authz.ErrNotFound.
	InvitationByID(ctx context.Context, id int64) (*Invitation, error)
	// ListInvitations returns up to limit invitations with an id above
	// after, in id order.
	ListInvitations(ctx context.Context, after int64, limit int) ([]*Invitation, error)
	// ReplaceInvitationCode gives the outstanding invitation id a new
	// code hash (the old code stops working), sets SentAt to at and
	// enqueues events, in one transaction; one that is revoked, expired or
	// used up gives authz.ErrNotFound.
	ReplaceInvitationCode(ctx context.Context, id int64, hash string, at time.Time, events ...outbox.Event) error
	// RevokeInvitation revokes invitation id at at; one already revoked or
	// missing gives authz.ErrNotFound.
	RevokeInvitation(ctx context.Context, id int64, at time.Time) error
	// RedeemInvitation records the redemption c (setting c.N) and, in the
	// same transaction, creates newUser (when not nil) or saves the
	// changed linked account (when not nil), and enqueues events (their
	// UserID is c.UserID). No redemption left, or a crmgate invitation
	// revoked or expired at c.At, gives ErrNoSlot; a contact bound to
	// another account ErrContactBound; a taken username or email
	// authz.ErrConflict. Of concurrent claims, no more than c.Max succeed.
	RedeemInvitation(ctx context.Context, c *Claim, newUser, linked *authz.User, events ...outbox.Event) error
	// ClaimDataverseInvitationMail records that Dataverse invitation id
	// (created at createdOn) is being emailed and enqueues events, in one
	// transaction; it reports false, enqueuing nothing, when the id was
	// claimed before (by any replica).
	ClaimDataverseInvitationMail(ctx context.Context, id string, createdOn, at time.Time, events ...outbox.Event) (bool, error)
	// LatestDataverseInvitationMail returns the greatest createdOn claimed
	// so far; zero when none.
	LatestDataverseInvitationMail(ctx context.Context) (time.Time, error)
	// InvitationRedemptions returns the redemptions of the invitations
	// keys names ("crmgate:<id>", "dataverse:<guid>"; at most
	// MaxRedemptionKeys), by key, each oldest first, at most perKey of
	// each (the first ones).
	InvitationRedemptions(ctx context.Context, keys []string, perKey int) (map[string][]Redemption, error)
}

// Redemption is one redemption of an invitation, as the store records it.
type Redemption struct {
	// N numbers the invitation's redemptions from 1.
	N int
	// UserID is the account that redeemed it (new, or linked).
	UserID string
	// ContactID is the contact the account was bound to; empty for none.
	ContactID string
	// At is when it was redeemed.
	At time.Time
}

// MaxRedemptionKeys bounds the invitations one Redemptions call reads.
const MaxRedemptionKeys = 200

// Key names crmgate's invitation id in Claim.Invitation and the redemptions.
func Key(id int64) string { return "crmgate:" + strconv.FormatInt(id, 10) }

// DataverseKey names Dataverse's invitation id there.
func DataverseKey(id string) string { return "dataverse:" + id }

// codeEncoding reads and writes crmgate codes; Strict refuses
// non-canonical spellings so each code has exactly one accepted text.
var codeEncoding = base64.RawURLEncoding.Strict()

// newCode returns a new code and its hash.
func newCode() (code, hash string, err error) {
	b := make([]byte, CodeBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(b)
	return codeEncoding.EncodeToString(b), hex.EncodeToString(sum[:]), nil
}

// parseCode returns the hash of a crmgate code, or ok false when code is
// not the text of a crmgate code (then it may be a Dataverse one).
func parseCode(code string) (hash string, ok bool) {
	if len(code) != (CodeBytes*8+5)/6 {
		return "", false
	}
	b, err := codeEncoding.DecodeString(code)
	if err != nil || len(b) != CodeBytes {
		return "", false
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), true
}
