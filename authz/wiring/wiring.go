// Package wiring builds every authz feature over one account store, each
// connected to the others through the small interfaces it declares. serve,
// dev, check-config, the users commands and the tests all build the
// identity layer with New, so that they cannot drift apart.
package wiring

import (
	"errors"
	"log/slog"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/crmgate/crmgate/authz/accounts"
	"github.com/crmgate/crmgate/authz/apikeys"
	"github.com/crmgate/crmgate/authz/audit"
	"github.com/crmgate/crmgate/authz/binding"
	"github.com/crmgate/crmgate/authz/bulk"
	"github.com/crmgate/crmgate/authz/invitations"
	"github.com/crmgate/crmgate/authz/jobs"
	"github.com/crmgate/crmgate/authz/onboarding"
	"github.com/crmgate/crmgate/authz/outbox"
	"github.com/crmgate/crmgate/authz/password"
	"github.com/crmgate/crmgate/authz/profile"
	"github.com/crmgate/crmgate/authz/recovery"
	"github.com/crmgate/crmgate/authz/registration"
	"github.com/crmgate/crmgate/authz/signin"
	"github.com/crmgate/crmgate/authz/tokens"
	"github.com/crmgate/crmgate/mail"
)

// Each feature satisfies what the others declare they need; a renamed
// method is a build error here rather than a silently missing capability.
var (
	_ accounts.Binder       = (*binding.Resolver)(nil)
	_ signin.Resolver       = (*binding.Resolver)(nil)
	_ profile.Resolver      = (*binding.Resolver)(nil)
	_ signin.Puller         = (*profile.Service)(nil)
	_ signin.Holds          = (*registration.Service)(nil)
	_ registration.Binder   = (*binding.Resolver)(nil)
	_ onboarding.Tokens     = (*tokens.Service)(nil)
	_ accounts.TokenRevoker = (*tokens.Service)(nil)
	_ recovery.Tokens       = (*tokens.Service)(nil)
	_ recovery.Passwords    = (*accounts.Service)(nil)
	_ recovery.Verifier     = (*signin.Service)(nil)
	_ recovery.Store        = Store(nil)
)

// Store is the account store every feature reads and writes;
// *store.DB satisfies it.
type Store interface {
	accounts.Store
	signin.Store
	profile.Store
	binding.Users
	apikeys.Store
	audit.Store
	outbox.Store
	tokens.Store
	onboarding.Store
	registration.Store
	invitations.Store
	jobs.Store
}

// Contacts is what the identity layer needs from Dataverse, one Web API
// request per call; crmclient.Directory and crmclient.CachedDirectory
// satisfy it.
type Contacts interface {
	binding.Contacts
	profile.Contacts
	onboarding.Contacts
}

// Options configure the identity layer. Fields without a documented zero
// value are required; the configuration (package config) supplies every one
// of them, with its defaults.
type Options struct {
	// Password are the argon2id parameters of new hashes.
	Password password.Params
	// PasswordPolicy is the rule for setting a password; see
	// accounts.Options.Policy. The zero value is the default policy.
	PasswordPolicy password.Policy
	// MaxFailures, AccountMaxFailures, LockoutDuration, ClientRate and
	// ClientBurst configure the sign-in defences, and ExplainRefusals its
	// answers; see signin.Options.
	MaxFailures        int
	AccountMaxFailures int
	LockoutDuration    time.Duration
	ClientRate         rate.Limit
	ClientBurst        int
	ExplainRefusals    bool
	// Contacts reads and writes Dataverse contacts; nil means no Dataverse:
	// then no binding resolves, and Binding, SignInCheck and FieldSync must
	// not need one.
	Contacts Contacts
	// Binding configures binding modes and the binding of new users.
	Binding binding.Options
	// SignInCheck configures the Dataverse check of bound users at
	// sign-in; the zero value turns it off.
	SignInCheck signin.Check
	// FieldSync maps user fields to contact columns; the zero value syncs
	// nothing. It needs Contacts and SignInCheck, where pulls happen.
	FieldSync profile.FieldSync
	// Snapshots answers session revalidations from a shared cache; nil
	// makes each one a fresh resolve. Build it with the columns
	// SnapshotColumns returns.
	Snapshots signin.Snapshots
	// BreakGlassRole is the local role of break-glass administrators; see
	// accounts.Options.BreakGlassRole. Empty turns the guard off.
	BreakGlassRole string
	// MaxOutstandingTokens caps the unused one-time tokens of one purpose a
	// user may hold (see tokens.Options.MaxOutstanding): a new confirmation
	// or reset link revokes the oldest beyond it. Zero means no cap, which
	// leaves every link ever sent valid until it expires.
	MaxOutstandingTokens int
	// Mail composes the account flows' mails (links built from the public
	// URL); nil means no mail can be composed, and the flows that send mail
	// (registration, reset, invitations) are not built.
	Mail *mail.Composer
	// SetPasswordTTL is how long the set-password links of generated
	// credentials work; zero means onboarding.DefaultSetPasswordTTL.
	SetPasswordTTL time.Duration
	// CredentialsUsernameColumn is the contact column whose value becomes
	// a generated account's username (see onboarding.Options.UsernameColumn);
	// empty means the contact's email address.
	CredentialsUsernameColumn string
	// Registration configures self-registration: its Mode (empty means
	// off), ConfirmEmail, ConfirmTTL, CreateContact, Fields and rates. The
	// other fields are filled here. Whatever the mode, registrations that
	// are not finished stay held back at sign-in.
	Registration registration.Options
	// ResetTTL is how long a password reset link works (see
	// recovery.Options.ResetTTL); zero means one hour.
	ResetTTL time.Duration
	// Invitations are Power Pages invitations (adx_invitation) and the
	// contacts they name; nil means only crmgate's own invitations are
	// accepted, and they cannot name a contact.
	Invitations invitations.Dataverse
	// SkipInvitationProof lets a Dataverse invitation be redeemed without
	// confirming the invited address; see
	// invitations.Options.SkipDataverseProof (dangerous). The zero value
	// requires the confirmation.
	SkipInvitationProof bool
	// JobLease and JobPollInterval are the bulk-job worker's lease and
	// poll interval (jobs.Options); zero means the jobs defaults.
	JobLease, JobPollInterval time.Duration
	// OutboxNotify is called after a change enqueued outbox events,
	// typically outbox.Worker.Notify; nil leaves them to the next poll.
	OutboxNotify func()
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the audit lines and failures callers do not see; nil
	// discards them.
	Logger *slog.Logger
}

// Services are the authz features, built over one store. The fields are
// what the HTTP edge and the commands use; each is safe for concurrent use.
type Services struct {
	Audit    *audit.Log
	Binding  *binding.Resolver
	Profile  *profile.Service
	Accounts *accounts.Service
	SignIn   *signin.Service
	APIKeys  *apikeys.Service
	Tokens   *tokens.Service
	// Onboarding approves and rejects registrations and generates
	// credentials for contacts; nil when Options.Mail is nil (its every
	// change sends a mail).
	Onboarding *onboarding.Service
	// Registration registers and confirms accounts; never nil (with the
	// mode off it only holds back unfinished registrations and confirms
	// their links).
	Registration *registration.Service
	// Invitations creates and redeems invitations; nil when Options.Mail
	// is nil (an invitation is always mailed).
	Invitations *invitations.Service
	// Mail is Options.Mail: nil when no mail can be composed.
	Mail *mail.Composer
	// Recovery runs the password reset, set-password and change flows;
	// nil when no mail can be composed (Options.Mail nil).
	Recovery *recovery.Service
	// Jobs runs the admin console's bulk actions on users (package bulk)
	// as durable jobs; its worker (Jobs.Run) must run for them to progress.
	Jobs *jobs.Service
}

// New builds every feature over db. It reports every problem of o at once.
func New(db Store, o Options) (*Services, error) {
	if db == nil {
		return nil, errors.New("wiring: nil store")
	}
	if len(o.FieldSync.Columns) > 0 && (o.Contacts == nil || !o.SignInCheck.Enabled) {
		// Pulls run at the sign-in check; without them the conflict rule
		// (Dataverse wins) would refuse every profile change.
		return nil, errors.New("authz: field sync needs a contact directory (Options.Contacts) and the sign-in check (Options.SignInCheck)")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Services{Audit: audit.New(db, o.Now, log), Mail: o.Mail}
	var bc binding.Contacts
	var pc profile.Contacts
	if o.Contacts != nil {
		bc, pc = o.Contacts, o.Contacts
	}
	var err error
	if s.Binding, err = binding.New(bc, db, o.Binding, log); err != nil {
		return nil, err
	}
	var resolver profile.Resolver
	if pc != nil {
		resolver = s.Binding
	}
	if s.Profile, err = profile.New(db, profile.Options{Sync: o.FieldSync, Contacts: pc, Resolver: resolver,
		Audit: s.Audit, Notify: o.OutboxNotify, Now: o.Now, Logger: log}); err != nil {
		return nil, err
	}
	if s.Tokens, err = tokens.New(db, tokens.Options{Audit: s.Audit, MaxOutstanding: o.MaxOutstandingTokens, Now: o.Now, Logger: log}); err != nil {
		return nil, err
	}
	if s.Accounts, err = accounts.New(db, accounts.Options{Password: o.Password, Policy: o.PasswordPolicy, Binder: s.Binding, Audit: s.Audit,
		BreakGlassRole: o.BreakGlassRole, Notify: o.OutboxNotify, Tokens: s.Tokens, Now: o.Now, Logger: log}); err != nil {
		return nil, err
	}
	ro := o.Registration
	if ro.Mode == "" {
		ro.Mode = registration.ModeOff
	}
	ro.Tokens, ro.Mail, ro.Audit, ro.Notify, ro.Now, ro.Logger = s.Tokens, o.Mail, s.Audit, o.OutboxNotify, o.Now, log
	ro.Policy, ro.Password = o.PasswordPolicy, o.Password
	if o.Contacts != nil {
		ro.Binder = s.Binding
	}
	if s.Registration, err = registration.New(db, ro); err != nil {
		return nil, err
	}
	so := signin.Options{Password: o.Password, MaxFailures: o.MaxFailures, AccountMaxFailures: o.AccountMaxFailures,
		LockoutDuration: o.LockoutDuration, ExplainRefusals: o.ExplainRefusals,
		ClientRate: o.ClientRate, ClientBurst: o.ClientBurst, Check: o.SignInCheck, Snapshots: o.Snapshots,
		Holds: s.Registration, Audit: s.Audit, Now: o.Now, Logger: log}
	if o.Contacts != nil {
		so.Resolver = s.Binding
	}
	if len(o.FieldSync.Columns) > 0 {
		so.Puller = s.Profile
	}
	if s.SignIn, err = signin.New(db, so); err != nil {
		return nil, err
	}
	if s.APIKeys, err = apikeys.New(db, s.Audit, o.Now, log); err != nil {
		return nil, err
	}
	if o.Mail != nil {
		oo := onboarding.Options{Audit: s.Audit, Mail: o.Mail, Tokens: s.Tokens, SetPasswordTTL: o.SetPasswordTTL,
			UsernameColumn: o.CredentialsUsernameColumn, BindingUsernameColumn: o.Binding.UsernameColumn, Notify: o.OutboxNotify, Now: o.Now, Logger: log}
		if o.Contacts != nil {
			oo.Contacts = o.Contacts
		}
		if s.Onboarding, err = onboarding.New(db, oo); err != nil {
			return nil, err
		}
		ttl := o.ResetTTL
		if ttl == 0 {
			ttl = time.Hour
		}
		if s.Recovery, err = recovery.New(db, recovery.Options{Tokens: s.Tokens, Passwords: s.Accounts, Verifier: s.SignIn,
			Mail: o.Mail, Audit: s.Audit, ResetTTL: ttl, ContactColumn: o.SignInCheck.PasswordChangeColumn,
			Notify: o.OutboxNotify, Now: o.Now, Logger: log}); err != nil {
			return nil, err
		}
		if s.Invitations, err = invitations.New(db, invitations.Options{Users: db, Audit: s.Audit, Mail: o.Mail,
			Tokens: s.Tokens, Dataverse: o.Invitations, Password: o.Password, Policy: o.PasswordPolicy,
			SkipDataverseProof: o.SkipInvitationProof, Notify: o.OutboxNotify, Now: o.Now, Logger: log}); err != nil {
			return nil, err
		}
	}
	bo := bulk.Options{Accounts: s.Accounts}
	if s.Onboarding != nil {
		bo.Approvals, bo.Links = s.Onboarding, s.Onboarding
	}
	if s.Jobs, err = jobs.New(jobs.Options{Store: db, Audit: s.Audit, Actions: bulk.Actions(bo), Lease: o.JobLease,
		PollInterval: o.JobPollInterval, Now: o.Now, Logger: log}); err != nil {
		return nil, err
	}
	return s, nil
}

// SnapshotColumns returns every column the revalidation of a session asks
// o.Snapshots for when sessions carry columns: those, the extra sign-in
// filter's, the synced fields', the username binding's and the custom
// binding filter's. A cache built with them answers every revalidation.
func SnapshotColumns(columns []string, o Options) []string {
	cols := slices.Clone(columns)
	add := func(extra []string) {
		for _, c := range extra {
			if !slices.Contains(cols, c) {
				cols = append(cols, c)
			}
		}
	}
	add(o.SignInCheck.Extra.Columns())
	if c := o.SignInCheck.PasswordChangeColumn; c != "" {
		add([]string{c})
	}
	add(o.FieldSync.ColumnNames())
	username := o.Binding.UsernameColumn
	if username == "" {
		username = binding.DefaultUsernameColumn
	}
	add([]string{username})
	add(o.Binding.Custom.Columns())
	return cols
}
