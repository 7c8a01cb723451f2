package charts

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/crmgate/crmgate/config"
)

// object is a decoded manifest: its kind, name and typed value.
type object struct {
	kind, name string
	value      any
}

// newTyped returns an empty object of the API type that apiVersion and
// kind name, or nil for a kind the chart is not expected to render.
func newTyped(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1 Pod":
		return &corev1.Pod{}
	case "v1 PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}
	case "networking.k8s.io/v1 Ingress":
		return &networkingv1.Ingress{}
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "gateway.networking.k8s.io/v1 HTTPRoute":
		return &gatewayv1.HTTPRoute{}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	}
	return nil
}

// docSep splits a multi-document YAML stream.
var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeAll splits the rendered manifests and decodes each strictly (an
// unknown or duplicate field is an error) into its API type.
func decodeAll(rendered string) ([]object, error) {
	var out []object
	for i, doc := range docSep.Split(rendered, -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("document %d: %v", i, err)
		}
		v := newTyped(tm.APIVersion, tm.Kind)
		if v == nil {
			return nil, fmt.Errorf("document %d: unexpected kind %s %s:\n%s", i, tm.APIVersion, tm.Kind, doc)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
			return nil, fmt.Errorf("document %d (%s): %v", i, tm.Kind, err)
		}
		name := v.(metav1.Object).GetName()
		if name == "" {
			return nil, fmt.Errorf("document %d (%s) has no name", i, tm.Kind)
		}
		out = append(out, object{kind: tm.Kind, name: name, value: v})
	}
	return out, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// metaObject is implemented by every typed object above.
var _ metav1.Object = (*appsv1.Deployment)(nil)

// renderScenario renders a scenario and decodes it.
func renderScenario(t *testing.T, file string) []object {
	t.Helper()
	out, err := render(t, file)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// podSpecs returns every pod template of objs: the Deployment's and the
// helm test Pod's.
func podSpecs(objs []object) map[string]struct {
	meta *metav1.ObjectMeta
	spec *corev1.PodSpec
} {
	out := map[string]struct {
		meta *metav1.ObjectMeta
		spec *corev1.PodSpec
	}{}
	for _, o := range objs {
		switch v := o.value.(type) {
		case *appsv1.Deployment:
			out["Deployment/"+o.name] = struct {
				meta *metav1.ObjectMeta
				spec *corev1.PodSpec
			}{&v.Spec.Template.ObjectMeta, &v.Spec.Template.Spec}
		case *corev1.Pod:
			out["Pod/"+o.name] = struct {
				meta *metav1.ObjectMeta
				spec *corev1.PodSpec
			}{&v.ObjectMeta, &v.Spec}
		}
	}
	return out
}

// TestStrictDecode decodes every object of every scenario into its API
// type, refusing unknown fields and unexpected kinds, and checks what each
// scenario promises to render.
func TestStrictDecode(t *testing.T) {
	needHelm(t)
	want := map[string][]string{
		"default":           {"ServiceAccount", "Secret", "PersistentVolumeClaim", "Service", "Deployment", "Pod"},
		"production":        {"ServiceAccount", "ConfigMap", "Service", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress", "NetworkPolicy", "ServiceMonitor", "Pod"},
		"gateway-api":       {"ServiceAccount", "Secret", "Service", "Deployment", "HTTPRoute", "Pod"},
		"openshift":         {"ServiceAccount", "PersistentVolumeClaim", "Service", "Deployment", "Pod"},
		"forward-auth-only": {"ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim", "Service", "Deployment", "Ingress", "Pod"},
	}
	for name, file := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			objs := renderScenario(t, file)
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.kind)
			}
			if w, ok := want[name]; ok {
				slices.Sort(kinds)
				w = slices.Clone(w)
				slices.Sort(w)
				if !slices.Equal(kinds, w) {
					t.Errorf("kinds = %v, want %v", kinds, w)
				}
			}
			if len(podSpecs(objs)) != 2 {
				t.Errorf("want 2 pod templates (Deployment, helm test Pod), got %d", len(podSpecs(objs)))
			}
		})
	}
}

// TestPodSecurityRestricted evaluates every rendered pod template of every
// scenario against the Pod Security Standards "restricted" level at the
// latest version, with the admission controller's own checks.
func TestPodSecurityRestricted(t *testing.T) {
	needHelm(t)
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lv := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}
	for name, file := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			pods := podSpecs(renderScenario(t, file))
			if len(pods) == 0 {
				t.Fatal("no pod template rendered")
			}
			for pod, p := range pods {
				result := policy.AggregateCheckResults(evaluator.EvaluatePod(lv, p.meta, p.spec))
				if !result.Allowed {
					t.Errorf("%s violates Pod Security restricted: %s: %s", pod, result.ForbiddenReason(), result.ForbiddenDetail())
				}
			}
		})
	}
}

// TestPodSecurityEvaluatorRefuses shows that the evaluation above can fail:
// the default scenario's Deployment with one restricted field undone.
func TestPodSecurityEvaluatorRefuses(t *testing.T) {
	needHelm(t)
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lv := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}
	for pod, p := range podSpecs(renderScenario(t, scenarios(t)["default"])) {
		yes := true
		p.spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = &yes
		if result := policy.AggregateCheckResults(evaluator.EvaluatePod(lv, p.meta, p.spec)); result.Allowed {
			t.Errorf("%s with allowPrivilegeEscalation: true passed restricted", pod)
		}
	}
}

// TestDeploymentContract checks the rendered Deployments against crmgate:
// every CRMGATE_* variable is a setting crmgate knows (or the _FILE form
// of a secret), both containers carry the same settings and mounts, the
// probes use the ops port's endpoints, and the grace period exceeds the
// shutdown delay plus the drain.
func TestDeploymentContract(t *testing.T) {
	needHelm(t)
	known := map[string]bool{}
	for _, f := range config.Fields() {
		if f.Secret {
			known[f.Name+"_FILE"] = true
		} else {
			known[f.Name] = true
		}
	}
	for name, file := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			for _, o := range renderScenario(t, file) {
				d, ok := o.value.(*appsv1.Deployment)
				if !ok {
					continue
				}
				spec := d.Spec.Template.Spec
				if len(spec.InitContainers) != 1 || len(spec.Containers) != 1 {
					t.Fatalf("want one init container and one container, got %d and %d", len(spec.InitContainers), len(spec.Containers))
				}
				initC, c := spec.InitContainers[0], spec.Containers[0]
				if !slices.Equal(initC.Args, []string{"check-config"}) || !slices.Equal(c.Args, []string{"serve"}) {
					t.Errorf("args: init %v, container %v", initC.Args, c.Args)
				}
				if fmt.Sprint(initC.Env) != fmt.Sprint(c.Env) || fmt.Sprint(initC.VolumeMounts) != fmt.Sprint(c.VolumeMounts) {
					t.Errorf("check-config does not see what serve sees:\n%v\n%v", initC.Env, c.Env)
				}
				env := map[string]string{}
				for _, e := range c.Env {
					// An SQLite path is no secret; a postgres:// URL is, so it
					// comes as a file, with the image's value overridden by "".
					sqlite := e.Name == "CRMGATE_DATABASE_URL" && (strings.HasPrefix(e.Value, "sqlite:") || e.Value == "")
					if !known[e.Name] && !sqlite {
						t.Errorf("%s is not a crmgate setting (secrets only as _FILE)", e.Name)
					}
					if e.ValueFrom != nil {
						t.Errorf("%s comes from valueFrom: secrets are files", e.Name)
					}
					env[e.Name] = e.Value
				}
				for _, p := range []struct {
					name string
					pr   *corev1.Probe
					path string
				}{{"startup", c.StartupProbe, "/livez"}, {"liveness", c.LivenessProbe, "/livez"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
					if p.pr == nil || p.pr.HTTPGet == nil || p.pr.HTTPGet.Path != p.path || p.pr.HTTPGet.Port.String() != "ops" {
						t.Errorf("%s probe = %+v, want GET %s on the ops port", p.name, p.pr, p.path)
					}
				}
				if env["CRMGATE_OPS_LISTEN"] != ":9090" || env["CRMGATE_LISTEN"] != ":8080" {
					t.Errorf("listeners %q %q do not match the container ports", env["CRMGATE_LISTEN"], env["CRMGATE_OPS_LISTEN"])
				}
				delay, err1 := parseSeconds(env["CRMGATE_SHUTDOWN_DELAY"])
				drain, err2 := parseSeconds(env["CRMGATE_SHUTDOWN_TIMEOUT"])
				if err1 != nil || err2 != nil {
					t.Fatalf("shutdown settings: %v %v", err1, err2)
				}
				if g := spec.TerminationGracePeriodSeconds; g == nil || *g <= delay+drain {
					t.Errorf("terminationGracePeriodSeconds %v does not exceed delay %d + drain %d", g, delay, drain)
				}
				if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
					t.Error("the service account token is mounted; crmgate calls no Kubernetes API")
				}
				if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
					t.Error("service links are on: CRMGATE_SERVICE_* variables would be injected")
				}
				for _, k := range []string{"checksum/policy", "checksum/secret"} {
					if len(d.Spec.Template.Annotations[k]) != 64 {
						t.Errorf("pod annotation %s = %q, want a sha256", k, d.Spec.Template.Annotations[k])
					}
				}
			}
		})
	}
}

func parseSeconds(s string) (int64, error) {
	var n int64
	if _, err := fmt.Sscanf(s, "%ds", &n); err != nil || fmt.Sprintf("%ds", n) != s {
		return 0, fmt.Errorf("%q is not whole seconds", s)
	}
	return n, nil
}

// TestMetricsStayPrivate: for every Service type, the ops port is only on a
// ClusterIP Service, and the helm test pod and the ServiceMonitor reach it
// there.
func TestMetricsStayPrivate(t *testing.T) {
	needHelm(t)
	for _, typ := range []string{"ClusterIP", "NodePort", "LoadBalancer"} {
		t.Run(typ, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "service.yaml")
			writeFile(t, file, "service:\n  type: "+typ+"\nserviceMonitor:\n  enabled: true\n")
			out, err := render(t, filepath.Join("testdata", "scenarios", "default.yaml"), file)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decodeAll(out)
			if err != nil {
				t.Fatal(err)
			}
			metricsService := ""
			for _, o := range objs {
				s, ok := o.value.(*corev1.Service)
				if !ok {
					continue
				}
				for _, p := range s.Spec.Ports {
					if p.TargetPort.String() != "ops" {
						continue
					}
					if s.Spec.Type != corev1.ServiceTypeClusterIP {
						t.Errorf("Service %s of type %s exposes the ops port", s.Name, s.Spec.Type)
					}
					if p.Name != "metrics" {
						t.Errorf("Service %s names the ops port %q, want metrics (the ServiceMonitor's port)", s.Name, p.Name)
					}
					metricsService = s.Name
				}
			}
			if metricsService == "" {
				t.Fatal("no Service has the ops port")
			}
			for _, o := range objs {
				if p, ok := o.value.(*corev1.Pod); ok {
					if want := "http://" + metricsService + ":9090/readyz"; !slices.Contains(p.Spec.Containers[0].Args, want) {
						t.Errorf("helm test pod args %v lack %s", p.Spec.Containers[0].Args, want)
					}
				}
			}
		})
	}
}
