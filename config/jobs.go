package config

import "time"

// JobsConfig configures the admin console's bulk actions, which run as
// durable jobs (package authz/jobs): every replica runs a worker.
type JobsConfig struct {
	Lease        time.Duration `env:"LEASE" envDefault:"2m" desc:"How long a replica owns the bulk job it runs without recording progress; after a crash or a restart another replica (or the restarted one) takes the job over once it ends, and goes on with the users not done yet. 5s to 1h."`
	PollInterval time.Duration `env:"POLL_INTERVAL" envDefault:"5s" desc:"How often each replica looks for bulk jobs submitted through another replica; a job submitted through this one starts at once. 100ms to 10m."`
}

// validateJobs checks the bulk-job settings.
func (c *Config) validateJobs(add func(name, format string, args ...any)) {
	j := c.Jobs
	if j.Lease < 5*time.Second || j.Lease > time.Hour {
		add("JOBS_LEASE", "must be between 5s and 1h, got %s", j.Lease)
	}
	if j.PollInterval < 100*time.Millisecond || j.PollInterval > 10*time.Minute {
		add("JOBS_POLL_INTERVAL", "must be between 100ms and 10m, got %s", j.PollInterval)
	}
}
