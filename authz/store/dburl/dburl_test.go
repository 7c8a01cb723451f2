package dburl

import (
	"strings"
	"testing"
)

// TestSQLitePath: the file an SQLite URL names, in every accepted form.
func TestSQLitePath(t *testing.T) {
	tests := []struct {
		in, path string
		create   bool
		err      string
	}{
		{"sqlite:/var/lib/crmgate/db.sqlite", "/var/lib/crmgate/db.sqlite", true, ""},
		{"sqlite:///var/lib/crmgate/db.sqlite", "/var/lib/crmgate/db.sqlite", true, ""},
		{"sqlite:data/crmgate.db", "data/crmgate.db", true, ""},
		{"./crmgate.db", "./crmgate.db", true, ""},
		{"  ./crmgate.db  ", "./crmgate.db", true, ""},
		{"file:/tmp/x.db?mode=rwc", "/tmp/x.db", true, ""},
		{"file:///tmp/x.db", "/tmp/x.db", true, ""},
		{"file://localhost/tmp/x.db", "/tmp/x.db", true, ""},
		{"file:data/x.db", "data/x.db", true, ""},
		{"file:/tmp/with%20space.db", "/tmp/with space.db", true, ""},
		{"file:/tmp/x.db?mode=ro", "/tmp/x.db", false, ""},
		{"file:/tmp/x.db?cache=shared&mode=rw", "/tmp/x.db", false, ""},
		{"file://example.com/tmp/x.db", "", false, "authority"},
		{"file:/tmp/%zz.db", "", false, "bad escape"},
	}
	for _, tt := range tests {
		u, err := Parse(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Parse(%q) error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || u.Path != tt.path || u.Create != tt.create {
			t.Errorf("Parse(%q) = path %q create %v, %v; want %q %v", tt.in, u.Path, u.Create, err, tt.path, tt.create)
		}
	}
	if u, err := Parse("postgres://u:p@db/crm"); err != nil || u.Path != "" || u.Create {
		t.Errorf("PostgreSQL URL: %+v %v", u, err)
	}
}
