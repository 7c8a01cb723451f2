package policies

import (
	"maps"
	"strings"
	"testing"
)

const dvRoutes = "routes:\n  - name: all\n    paths: [\"/**\"]\n    access: authenticated\n"

func TestDataverseSection(t *testing.T) {
	p := mustParse(t, dvRoutes+`dataverse:
  lifecycle_actions:
    created:
      name: alex_WPUserCreated
      params: {UserId: id, Email: email, Roles: roles}
    deleted:
      name: alex_WPUserDeleted
    bound: ~
`)
	got := p.Dataverse.LifecycleActions
	if len(got) != 2 {
		t.Fatalf("LifecycleActions = %+v, want created and deleted", got)
	}
	c := got[LifecycleCreated]
	if c.Name != "alex_WPUserCreated" || c.Line != 7 ||
		!maps.Equal(c.Params, map[string]string{"UserId": "id", "Email": "email", "Roles": "roles"}) {
		t.Errorf("created = %+v", c)
	}
	if d := got[LifecycleDeleted]; d.Name != "alex_WPUserDeleted" || d.Params != nil {
		t.Errorf("deleted = %+v", d)
	}
	if p := mustParse(t, dvRoutes); p.Dataverse.LifecycleActions != nil {
		t.Errorf("no section: %+v", p.Dataverse)
	}
}

func TestDataverseSectionErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown event", "dataverse:\n  lifecycle_actions:\n    renamed: {name: x_Renamed}\n",
			[]string{"policy.yaml:7: dataverse.lifecycle_actions.renamed: unknown field"}},
		{"unknown key", "dataverse:\n  lifecycle:\n    created: {name: x}\n",
			[]string{"policy.yaml:6: dataverse.lifecycle: unknown field"}},
		{"name required", "dataverse:\n  lifecycle_actions:\n    created:\n      params: {UserId: id}\n",
			[]string{"policy.yaml:8: dataverse.lifecycle_actions.created: name is required"}},
		{"bad names and fields, all at once", `dataverse:
  lifecycle_actions:
    created:
      name: alex/WPUserCreated
      params:
        User Id: id
        Hash: password_hash
        Email: [email]
    updated:
      name: alex_WPUserUpdated
      params: {UserId: id, UserId: username}
      extra: 1
`, []string{
			`policy.yaml:8: dataverse.lifecycle_actions.created.name: "alex/WPUserCreated" must be an action's unique name`,
			`policy.yaml:10: dataverse.lifecycle_actions.created.params: "User Id" is not a parameter name`,
			`policy.yaml:11: dataverse.lifecycle_actions.created.params.Hash: unknown event field "password_hash"`,
			`policy.yaml:12: dataverse.lifecycle_actions.created.params.Email: must be a string`,
			`policy.yaml:15: dataverse.lifecycle_actions.updated.params.UserId: repeated (first at line 15)`,
			`policy.yaml:16: dataverse.lifecycle_actions.updated.extra: unknown field`,
		}},
		{"params not a mapping", "dataverse:\n  lifecycle_actions:\n    created:\n      name: x_Created\n      params: [id]\n",
			[]string{"policy.yaml:9: dataverse.lifecycle_actions.created.params: must be a mapping"}},
		{"section not a mapping", "dataverse: yes\n", []string{"policy.yaml:5: dataverse: must be a mapping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("policy.yaml", []byte(dvRoutes+tt.src))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLifecycleFieldsIsACopy(t *testing.T) {
	f := LifecycleFields()
	f[0] = "password_hash"
	if LifecycleFields()[0] != "id" {
		t.Fatal("LifecycleFields shares its slice")
	}
}

func TestDataverseFilters(t *testing.T) {
	p := mustParse(t, dvRoutes+`dataverse:
  binding_filter: emailaddress1 eq {email}
  signin_filter: "adx_portalaccess eq true"
`)
	if got, want := p.Dataverse.BindingFilter, (FilterText{Text: "emailaddress1 eq {email}", Line: 6}); got != want {
		t.Errorf("BindingFilter = %+v, want %+v", got, want)
	}
	if got, want := p.Dataverse.SignInFilter, (FilterText{Text: "adx_portalaccess eq true", Line: 7}); got != want {
		t.Errorf("SignInFilter = %+v, want %+v", got, want)
	}
	p = mustParse(t, dvRoutes+"dataverse:\n  binding_filter: ~\n")
	if p.Dataverse.BindingFilter != (FilterText{}) || p.Dataverse.SignInFilter != (FilterText{}) {
		t.Errorf("null and missing filters: %+v", p.Dataverse)
	}

	tests := []struct {
		name, src string
		want      []string
	}{
		{"not a string", "dataverse:\n  binding_filter: [a, b]\n  signin_filter: {a: b}\n", []string{
			"policy.yaml:6: dataverse.binding_filter: must be a string",
			"policy.yaml:7: dataverse.signin_filter: must be a string",
		}},
		{"empty", "dataverse:\n  signin_filter: '  '\n", []string{"policy.yaml:6: dataverse.signin_filter: must not be empty"}},
		{"misspelt", "dataverse:\n  bind_filter: x eq {email}\n", []string{"policy.yaml:6: dataverse.bind_filter: unknown field"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("policy.yaml", []byte(dvRoutes+tt.src))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
