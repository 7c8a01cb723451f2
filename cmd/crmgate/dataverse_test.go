package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crmgate/crmgate/authz/lifecycle"
	"github.com/crmgate/crmgate/policies"
)

// TestLifecycleFieldsMatchAuthz keeps the policy file's list of event
// fields (a copy, since policies does not import authz) equal to the fields
// authz can send.
func TestLifecycleFieldsMatchAuthz(t *testing.T) {
	authzFields := []string{
		lifecycle.FieldID, lifecycle.FieldUsername, lifecycle.FieldEmail, lifecycle.FieldFirstName,
		lifecycle.FieldLastName, lifecycle.FieldDisplayName, lifecycle.FieldRoles, lifecycle.FieldStatus,
		lifecycle.FieldContactID, lifecycle.FieldBindingMode, lifecycle.FieldEventID, lifecycle.FieldEventType,
		lifecycle.FieldOccurredAt,
	}
	got := policies.LifecycleFields()
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(authzFields))) {
		t.Fatalf("policies.LifecycleFields() = %v\nauthz.LifecycleField* = %v", got, authzFields)
	}
	// Every field the policy accepts is one authz accepts.
	params := map[string]string{}
	for i, f := range got {
		params["P"+string(rune('a'+i))] = f
	}
	spec := lifecycle.ActionSpec{Name: "x_Action", Params: params}
	if err := (lifecycle.Actions{Created: spec, Updated: spec, Deleted: spec, Bound: spec, Unbound: spec, Approved: spec, Rejected: spec}).Validate(); err != nil {
		t.Fatal(err)
	}
	// Every event of the policy maps to one of authz's.
	pol, err := policies.Parse("policy.yaml", []byte(dvPolicy("")))
	if err != nil {
		t.Fatal(err)
	}
	a, err := lifecycleActions(pol)
	if err != nil {
		t.Fatal(err)
	}
	for ev, s := range map[string]lifecycle.ActionSpec{"created": a.Created, "updated": a.Updated, "deleted": a.Deleted, "bound": a.Bound, "unbound": a.Unbound,
		"approved": a.Approved, "rejected": a.Rejected} {
		if s.Name != "x_"+ev || s.Params["UserId"] != "id" {
			t.Errorf("%s = %+v", ev, s)
		}
	}
}

// dvPolicy is a policy whose every lifecycle event calls x_<event>(UserId: id),
// plus extra lines in the dataverse section.
func dvPolicy(extra string) string {
	var b strings.Builder
	b.WriteString("routes:\n  - name: all\n    paths: [\"/**\"]\n    access: authenticated\ndataverse:\n  lifecycle_actions:\n")
	for _, ev := range policies.LifecycleEvents() {
		b.WriteString("    " + ev + ": {name: x_" + ev + ", params: {UserId: id}}\n")
	}
	b.WriteString(extra)
	return b.String()
}

func TestCheckConfigDataverse(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(dvPolicy("")), 0o600); err != nil {
		t.Fatal(err)
	}
	badPol := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badPol, []byte(dvPolicy("    oops: {name: x_oops}\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	dv := []string{"CRMGATE_DATAVERSE_URL=https://org.crm.dynamics.com", "CRMGATE_DATAVERSE_TENANT_ID=contoso.onmicrosoft.com",
		"CRMGATE_DATAVERSE_CLIENT_ID=00000000-0000-4000-8000-00000000c0de"}
	tests := []struct {
		name  string
		env   []string
		valid bool
		want  []string
	}{
		{"dataverse with a secret", append([]string{"CRMGATE_POLICY_FILE=" + pol, "CRMGATE_DATAVERSE_CLIENT_SECRET=x"}, dv...), true,
			[]string{"configuration is valid"}},
		{"actions without dataverse", []string{"CRMGATE_POLICY_FILE=" + pol}, true,
			[]string{"warning: the policy names Dataverse lifecycle actions but CRMGATE_DATAVERSE_URL is unset"}},
		{"missing certificate file", append([]string{"CRMGATE_POLICY_FILE=" + pol, "CRMGATE_DATAVERSE_CERTIFICATE_FILE=" + filepath.Join(dir, "none.pem")}, dv...), false,
			[]string{"dataverse: crmclient:", "none.pem"}},
		{"settings without a url", []string{"CRMGATE_DATAVERSE_CLIENT_SECRET=x"}, false,
			[]string{"CRMGATE_DATAVERSE_URL: required because CRMGATE_DATAVERSE_CLIENT_SECRET set"}},
		{"unknown event in the policy", []string{"CRMGATE_POLICY_FILE=" + badPol}, false,
			[]string{fmt.Sprintf("bad.yaml:%d: dataverse.lifecycle_actions.oops: unknown field", 7+len(policies.LifecycleEvents()))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), []string{"check-config"}, baseEnv(t, dir, tt.env...), nil, &out, io.Discard)
			if (err == nil) != tt.valid {
				t.Fatalf("check-config returned %v:\n%s", err, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// TestDevDeliversLifecycleEvents shows that `crmgate dev` is wired to its
// emulator: the created events of the two demo accounts reach the demo
// actions (counted as delivered, which needs the emulator's answer): the
// two bound users and the unbound break-glass admin, whose binding is set
// to none after it is created (its user.unbound event is delivered too).
func TestDevDeliversLifecycleEvents(t *testing.T) {
	g := startDev(t)
	var metricsURL string
	for _, l := range g.lines {
		if m := regexp.MustCompile(`^Ops:   (\S+)$`).FindStringSubmatch(l); m != nil {
			metricsURL = m[1]
		}
	}
	if metricsURL == "" {
		t.Fatalf("no ops line:\n%s", strings.Join(g.lines, "\n"))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if bytes.Contains(m, []byte(`crmgate_outbox_delivered_total{type="user.created"} 3`)) &&
			bytes.Contains(m, []byte(`crmgate_outbox_delivered_total{type="user.unbound"} 1`)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo users' created events were not delivered:\n%s", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
