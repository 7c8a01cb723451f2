package config

import (
	"regexp"
	"time"
)

// HooksConfig configures the webhook receivers (proxy/handlers_hooks.go).
type HooksConfig struct {
	Dataverse DataverseHookConfig `envPrefix:"DATAVERSE_"`
}

// DataverseHookConfig configures POST <prefix>/hooks/dataverse, the
// receiver of Dataverse service-endpoint webhooks (contact changes end or
// refresh the bound users' sessions on every replica). An empty Secret
// means the receiver is off (404).
type DataverseHookConfig struct {
	Auth    string        `env:"AUTH" envDefault:"webhookkey" desc:"How the webhook registration authenticates (Plugin Registration Tool, Authentication): webhookkey (the secret as the code query parameter), header (a header NAME: secret) or querystring (a query parameter NAME=secret)."`
	Name    string        `env:"NAME" desc:"The header (auth header) or query parameter (auth querystring) carrying the secret; ignored for webhookkey, whose parameter is always code. Required for header and querystring."`
	Secret  string        `env:"SECRET" secret:"true" desc:"The webhook's key: at least 32 characters, compared in constant time. Empty: no webhook receiver (404)."`
	MaxAge  time.Duration `env:"MAX_AGE" envDefault:"5m" desc:"A delivery whose OperationCreatedOn is older than this (or this far in the future) is refused as stale; a repeated delivery within it is answered 200 without acting twice. 1m to 1h."`
	MaxBody int64         `env:"MAX_BODY" envDefault:"262144" desc:"Largest webhook body in bytes (the RemoteExecutionContext JSON); larger is refused with 413. 4096 to 4194304."`
}

// hookParamName is a header or query parameter name a registration may use.
var hookParamName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// validateHooks checks the webhook receiver settings.
func (c *Config) validateHooks(add func(name, format string, args ...any)) {
	h := c.Hooks.Dataverse
	switch h.Auth {
	case "webhookkey":
	case "header", "querystring":
		if h.Secret != "" && !hookParamName.MatchString(h.Name) {
			add("HOOKS_DATAVERSE_NAME", "must be a header or parameter name (letters, digits, _ . -, at most 64) for auth %s, got %q", h.Auth, h.Name)
		}
	default:
		add("HOOKS_DATAVERSE_AUTH", "must be webhookkey, header or querystring, got %q", h.Auth)
	}
	if h.Secret != "" && len(h.Secret) < 32 {
		add("HOOKS_DATAVERSE_SECRET", "must be at least 32 characters (got %d)", len(h.Secret))
	}
	if h.Secret != "" && !c.Dataverse.Configured() {
		add("HOOKS_DATAVERSE_SECRET", "needs Dataverse (CRMGATE_DATAVERSE_URL): the webhook reports contact changes")
	}
	if h.MaxAge < time.Minute || h.MaxAge > time.Hour {
		add("HOOKS_DATAVERSE_MAX_AGE", "must be between 1m and 1h, got %s", h.MaxAge)
	}
	if h.MaxBody < 4096 || h.MaxBody > 4<<20 {
		add("HOOKS_DATAVERSE_MAX_BODY", "must be between 4096 and 4194304, got %d", h.MaxBody)
	}
}
