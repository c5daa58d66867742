// Package kubetest renders every kustomize overlay under deploy/k8s and checks each object strictly
// against its Kubernetes API type (KEDA's ScaledObject against a strict schema of its own), and checks the
// manifests against contracts/ and the services' configuration so they cannot drift.
package kubetest

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/cosell-dev/cosell/contracts"
	k8s "github.com/cosell-dev/cosell/deploy/k8s"
)

var overlays = []string{"dev", "prod"}

// scaledObject is KEDA's keda.sh/v1alpha1 ScaledObject, the fields cosell may use; decoding strictly into
// it rejects a misspelt or misplaced field.
type scaledObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		Advanced        *struct {
			HorizontalPodAutoscalerConfig *struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type       string                         `json:"type"`
			Name       string                         `json:"name,omitempty"`
			MetricType autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
			Metadata   map[string]string              `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// triggerKeys are the metadata keys KEDA's scalers accept (docs for the nats-jetstream and cpu scalers).
var triggerKeys = map[string][]string{
	"nats-jetstream": {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold", "activationLagThreshold", "useHttps"},
	"cpu":            {"value", "containerName"},
}

// rendered is one overlay's objects, decoded.
type rendered struct {
	deployments map[string]*appsv1.Deployment
	pdbs        []*policyv1.PodDisruptionBudget
	services    map[string]*corev1.Service
	ingresses   []*networkingv1.Ingress
	policies    []*networkingv1.NetworkPolicy
	configMaps  map[string]*corev1.ConfigMap
	jobs        []*batchv1.Job
	scaled      map[string]*scaledObject
	namespaces  []string
	certs       []*certificate
	monitors    []*monitoringv1.ServiceMonitor
	rules       []*monitoringv1.PrometheusRule
}

func render(t *testing.T, overlay string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("..", "k8s", "overlays", overlay))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", overlay, err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, scaled: map[string]*scaledObject{}}
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		var obj any
		switch head.APIVersion + "/" + head.Kind {
		case "apps/v1/Deployment":
			d := &appsv1.Deployment{}
			obj, r.deployments[head.Metadata.Name] = d, d
		case "policy/v1/PodDisruptionBudget":
			p := &policyv1.PodDisruptionBudget{}
			obj, r.pdbs = p, append(r.pdbs, p)
		case "v1/Service":
			s := &corev1.Service{}
			obj, r.services[head.Metadata.Name] = s, s
		case "v1/ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "v1/Namespace":
			obj, r.namespaces = &corev1.Namespace{}, append(r.namespaces, head.Metadata.Name)
		case "v1/ConfigMap":
			c := &corev1.ConfigMap{}
			obj, r.configMaps[strings.SplitN(head.Metadata.Name, "-", 3)[0]+"-"+strings.SplitN(head.Metadata.Name, "-", 3)[1]] = c, c
		case "networking.k8s.io/v1/Ingress":
			i := &networkingv1.Ingress{}
			obj, r.ingresses = i, append(r.ingresses, i)
		case "networking.k8s.io/v1/NetworkPolicy":
			p := &networkingv1.NetworkPolicy{}
			obj, r.policies = p, append(r.policies, p)
		case "batch/v1/Job":
			j := &batchv1.Job{}
			obj, r.jobs = j, append(r.jobs, j)
		case "keda.sh/v1alpha1/ScaledObject":
			s := &scaledObject{}
			obj, r.scaled[head.Metadata.Name] = s, s
		case "cert-manager.io/v1/Certificate":
			c := &certificate{}
			obj, r.certs = c, append(r.certs, c)
		case "monitoring.coreos.com/v1/ServiceMonitor":
			m := &monitoringv1.ServiceMonitor{}
			obj, r.monitors = m, append(r.monitors, m)
		case "monitoring.coreos.com/v1/PrometheusRule":
			p := &monitoringv1.PrometheusRule{}
			obj, r.rules = p, append(r.rules, p)
		default:
			t.Fatalf("%s renders %s %s %q, which this test does not know (a Secret must never be rendered)",
				overlay, head.APIVersion, head.Kind, head.Metadata.Name)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Errorf("%s: %s %q does not decode strictly: %v", overlay, head.Kind, head.Metadata.Name, err)
		}
	}
	return r
}

// serviceEnvVars are the variables the services read: every `env:"COSELL_..."` tag in services/, and the
// OpenTelemetry variables the tracing set-up documents (platform.TraceEnv, read by the SDK).
func serviceEnvVars(t *testing.T) map[string]bool {
	t.Helper()
	tag := regexp.MustCompile(`env:"(COSELL_[A-Z0-9_]+)"`)
	otel := regexp.MustCompile(`"(OTEL_[A-Z0-9_]+) `)
	vars := map[string]bool{}
	walkServiceSources(t, func(src []byte) {
		for _, m := range tag.FindAllSubmatch(src, -1) {
			vars[string(m[1])] = true
		}
		for _, m := range otel.FindAllSubmatch(src, -1) {
			vars[string(m[1])] = true
		}
	})
	return vars
}

// walkServiceSources calls fn with every non-test Go file under services/.
func walkServiceSources(t *testing.T, fn func(src []byte)) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join("..", "..", "services"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		fn(src)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOverlaysRenderAndDecodeStrictly(t *testing.T) {
	known := serviceEnvVars(t)
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			r := render(t, overlay)
			if len(r.namespaces) != 1 {
				t.Errorf("namespaces %v", r.namespaces)
			}
			var names []string
			for n := range r.deployments {
				names = append(names, n)
			}
			slices.Sort(names)
			want := slices.Clone(contracts.Stages())
			slices.Sort(want)
			if !slices.Equal(names, want) {
				t.Fatalf("deployments %v, want one per stage %v", names, want)
			}
			cfg := r.configMaps["cosell-config"]
			if cfg == nil {
				t.Fatal("no cosell-config ConfigMap")
			}
			for k := range cfg.Data {
				if !known[k] {
					t.Errorf("cosell-config sets %s, which no service reads", k)
				}
			}
			for name, d := range r.deployments {
				checkDeployment(t, r, name, d, known)
			}
			for _, j := range r.jobs {
				checkPodSecrets(t, j.Name, &j.Spec.Template.Spec, known)
			}
		})
	}
}

func checkDeployment(t *testing.T, r *rendered, name string, d *appsv1.Deployment, known map[string]bool) {
	t.Helper()
	ps := &d.Spec.Template.Spec
	if len(ps.Containers) != 1 {
		t.Fatalf("%s: %d containers", name, len(ps.Containers))
	}
	c := ps.Containers[0]
	if !strings.Contains(c.Image, "/") || !strings.Contains(c.Image, ":") {
		t.Errorf("%s: image %q is not set to a registry and tag by the overlay", name, c.Image)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: resources %+v lack cpu/memory requests or a memory limit", name, c.Resources)
	}
	for probe, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.StrVal != "admin" {
			t.Errorf("%s: %s probe %+v is not an HTTP probe on the admin port", name, probe, p)
		}
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("%s: probes must use /healthz (liveness) and /readyz (readiness)", name)
	}
	// The drain: up to 25s for in-flight handlers plus 10s for the NATS connection drain.
	if g := ps.TerminationGracePeriodSeconds; g == nil || *g < 45 {
		t.Errorf("%s: terminationGracePeriodSeconds %v does not cover the drain", name, g)
	}
	if sc := ps.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("%s: not runAsNonRoot", name)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: root filesystem is writable", name)
	}
	env := checkPodSecrets(t, name, ps, known)
	if env["COSELL_NATS_USER"].Value != name {
		t.Errorf("%s connects as NATS user %q, want its own user", name, env["COSELL_NATS_USER"].Value)
	}
	if ref := env["COSELL_NATS_PASSWORD"].ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Key != name {
		t.Errorf("%s: COSELL_NATS_PASSWORD must come from its own key of the cosell-nats Secret", name)
	}
	if name == contracts.StageSFIngest {
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("sf-ingest is a poller: exactly one replica, Recreate (got %v, %s)", d.Spec.Replicas, d.Spec.Strategy.Type)
		}
		if _, ok := r.scaled[name]; ok {
			t.Error("sf-ingest must not be autoscaled")
		}
	}
	pdb := 0
	for _, p := range r.pdbs {
		if sel, _ := metav1.LabelSelectorAsSelector(p.Spec.Selector); sel != nil && sel.Matches(labelSet(d.Spec.Template.Labels)) {
			pdb++
		}
	}
	if pdb != 1 {
		t.Errorf("%s: %d PodDisruptionBudgets select it, want 1", name, pdb)
	}
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool              { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string            { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

// checkPodSecrets checks every variable is one a service reads and every secret is a reference to one of
// the documented Secrets (cosell-status, the status page's logins, for the auditor only); it returns the
// env by name.
func checkPodSecrets(t *testing.T, name string, ps *corev1.PodSpec, known map[string]bool) map[string]corev1.EnvVar {
	t.Helper()
	secrets := []string{"cosell-nats", "cosell-salesforce", "cosell-partner-center"}
	if name == contracts.StageAuditor {
		secrets = append(secrets, statusSecret)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range ps.Containers[0].Env {
		env[e.Name] = e
		if !known[e.Name] {
			t.Errorf("%s sets %s, which no service reads", name, e.Name)
		}
		if strings.Contains(e.Name, "SECRET") || strings.Contains(e.Name, "PASSWORD") || strings.Contains(e.Name, "TOKEN") {
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("%s: %s is not a Secret reference", name, e.Name)
			}
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !slices.Contains(secrets, e.ValueFrom.SecretKeyRef.Name) {
			t.Errorf("%s: %s refers to Secret %q, not one of %v", name, e.Name, e.ValueFrom.SecretKeyRef.Name, secrets)
		}
	}
	return env
}

func TestEveryDurableScalesItsStage(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			r := render(t, overlay)
			seen := map[string]bool{}
			for name, so := range r.scaled {
				if so.Spec.ScaleTargetRef.Kind != "Deployment" || r.deployments[so.Spec.ScaleTargetRef.Name] == nil {
					t.Errorf("ScaledObject %s targets %+v, not a rendered Deployment", name, so.Spec.ScaleTargetRef)
				}
				if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 || so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < *so.Spec.MinReplicaCount {
					t.Errorf("ScaledObject %s replica bounds %v..%v", name, so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount)
				}
				for _, tr := range so.Spec.Triggers {
					keys, ok := triggerKeys[tr.Type]
					if !ok {
						t.Errorf("%s: trigger type %q", name, tr.Type)
						continue
					}
					for k := range tr.Metadata {
						if !slices.Contains(keys, k) {
							t.Errorf("%s: %s trigger has unknown metadata %q", name, tr.Type, k)
						}
					}
					if tr.Type != "nats-jetstream" {
						continue
					}
					c, ok := contracts.ConsumerFor(tr.Metadata["consumer"])
					if !ok || c.Stream != tr.Metadata["stream"] {
						t.Errorf("%s scales on %s/%s, which is no durable in contracts", name, tr.Metadata["stream"], tr.Metadata["consumer"])
						continue
					}
					if c.Stage != so.Spec.ScaleTargetRef.Name {
						t.Errorf("durable %s belongs to %s but scales %s", c.Durable, c.Stage, so.Spec.ScaleTargetRef.Name)
					}
					if tr.Metadata["account"] != "COSELL" || tr.Metadata["lagThreshold"] == "" || tr.Metadata["natsServerMonitoringEndpoint"] == "" {
						t.Errorf("%s: trigger %s metadata %v", name, c.Durable, tr.Metadata)
					}
					seen[c.Durable] = true
				}
			}
			for _, c := range contracts.Consumers() {
				if !seen[c.Durable] {
					t.Errorf("durable %s (%s) has no lag trigger", c.Durable, c.Stage)
				}
			}
			if so := r.scaled[contracts.StagePCIngest]; so == nil || !slices.ContainsFunc(so.Spec.Triggers, func(tr struct {
				Type       string                         `json:"type"`
				Name       string                         `json:"name,omitempty"`
				MetricType autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
				Metadata   map[string]string              `json:"metadata"`
			}) bool {
				return tr.Type == "cpu"
			}) {
				t.Error("pc-ingest must scale on CPU")
			}
		})
	}
}

func TestNATSAccountMatchesThePermissionSet(t *testing.T) {
	conf, err := os.ReadFile(filepath.Join("..", "nats", "cosell-auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "\n  COSELL {\n") {
		t.Fatal("the ScaledObjects name the account COSELL, which deploy/nats/cosell-auth.conf does not define")
	}
	for _, stage := range contracts.Stages() {
		if !strings.Contains(string(conf), fmt.Sprintf("user: %q", stage)) {
			t.Errorf("the Deployments connect as %s, which has no NATS user", stage)
		}
	}
}

func TestProdRunsR3AndDevR1(t *testing.T) {
	for overlay, want := range map[string]string{"dev": "1", "prod": "3"} {
		r := render(t, overlay)
		if got := r.configMaps["cosell-config"].Data["COSELL_STREAM_REPLICAS"]; got != want {
			t.Errorf("%s: COSELL_STREAM_REPLICAS=%s, want %s", overlay, got, want)
		}
		if got := r.configMaps["cosell-config"].Data["COSELL_PROVISION"]; got != "false" {
			t.Errorf("%s: the stages provision (COSELL_PROVISION=%s); that is the provisioning Job's job", overlay, got)
		}
	}
}

// TestWebhookIsPublishedAndNothingElse: the webhook path is the one Ingress every overlay has; with the
// status-oidc component (prod) the status page's own Ingress routes only the page's paths to the auditor
// (checked in statusauth_test.go), so neither publishes /metrics or another admin path.
func TestWebhookIsPublishedAndNothingElse(t *testing.T) {
	for _, overlay := range overlays {
		r := render(t, overlay)
		var ing *networkingv1.Ingress
		for _, i := range r.ingresses {
			switch i.Name {
			case "pc-ingest":
				ing = i
			case "status":
			default:
				t.Errorf("%s: ingress %s publishes something else", overlay, i.Name)
			}
		}
		if ing == nil {
			t.Fatalf("%s: no pc-ingest ingress", overlay)
		}
		paths := ing.Spec.Rules[0].HTTP.Paths
		if len(paths) != 1 || paths[0].Path != "/webhooks/partner-center" || paths[0].Backend.Service.Name != "pc-ingest" {
			t.Errorf("%s: ingress paths %+v", overlay, paths)
		}
		if len(ing.Spec.TLS) == 0 {
			t.Errorf("%s: webhook ingress without TLS", overlay)
		}
		svc := r.services["pc-ingest"]
		if svc == nil || svc.Spec.Ports[0].TargetPort.StrVal != "webhook" {
			t.Fatalf("%s: pc-ingest Service %+v", overlay, svc)
		}
		if r.configMaps["cosell-config"].Data["COSELL_PC_WEBHOOK_PATH"] != paths[0].Path {
			t.Errorf("%s: the ingress path is not the path pc-ingest serves", overlay)
		}
		deny := false
		for _, p := range r.policies {
			deny = deny || (len(p.Spec.PodSelector.MatchLabels) == 0 && len(p.Spec.PodSelector.MatchExpressions) == 0 &&
				len(p.Spec.Ingress) == 0 && len(p.Spec.Egress) == 0 && len(p.Spec.PolicyTypes) == 2)
		}
		if !deny {
			t.Errorf("%s: no default-deny NetworkPolicy", overlay)
		}
	}
}

// TestMappingConfigMapIsTheBuiltInDefault: the cosell-mapping ConfigMap the base generates holds exactly
// the mapping built into the binaries (both come from deploy/k8s/base/mapping.yaml, one file), and every
// stage that loads a mapping (its config holds mapping.Config, so it reads COSELL_MAPPING_FILE from
// cosell-config) mounts that ConfigMap where COSELL_MAPPING_FILE points.
func TestMappingConfigMapIsTheBuiltInDefault(t *testing.T) {
	builtIn, err := fs.ReadFile(k8s.Files, k8s.DefaultMappingFile)
	if err != nil {
		t.Fatal(err)
	}
	var readers []string
	for _, stage := range contracts.Stages() {
		if usesMapping(t, filepath.Join("..", "..", "services", stage)) {
			readers = append(readers, stage)
		}
	}
	if !slices.Contains(readers, contracts.StageMapper) || !slices.Contains(readers, contracts.StageSFIngest) {
		t.Fatalf("stages loading a mapping: %v; the mapper and sf-ingest do", readers)
	}
	for _, overlay := range overlays {
		r := render(t, overlay)
		cm := r.configMaps["cosell-mapping"]
		if cm == nil {
			t.Fatalf("%s: no cosell-mapping ConfigMap", overlay)
		}
		if cm.Data["mapping.yaml"] != string(builtIn) {
			t.Errorf("%s: the cosell-mapping ConfigMap is not deploy/k8s/base/mapping.yaml, the built-in mapping", overlay)
		}
		file := r.configMaps["cosell-config"].Data["COSELL_MAPPING_FILE"]
		dir, key := path.Split(file)
		if _, ok := cm.Data[key]; !ok {
			t.Errorf("%s: COSELL_MAPPING_FILE=%s names no key of cosell-mapping", overlay, file)
		}
		for _, stage := range readers {
			if !mountsConfigMap(r.deployments[stage], cm.Name, path.Clean(dir)) {
				t.Errorf("%s: %s loads COSELL_MAPPING_FILE=%s but does not mount ConfigMap %s at %s", overlay, stage, file, cm.Name, dir)
			}
		}
	}
}

// usesMapping reports a stage whose code (main.go and its packages) loads a mapping.
func usesMapping(t *testing.T, dir string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		src, err := os.ReadFile(p)
		found = found || bytes.Contains(src, []byte("mapping.Config"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// mountsConfigMap reports a Deployment whose container mounts ConfigMap name at dir.
func mountsConfigMap(d *appsv1.Deployment, name, dir string) bool {
	if d == nil {
		return false
	}
	ps := d.Spec.Template.Spec
	for _, v := range ps.Volumes {
		if v.ConfigMap == nil || v.ConfigMap.Name != name {
			continue
		}
		for _, m := range ps.Containers[0].VolumeMounts {
			if m.Name == v.Name && path.Clean(m.MountPath) == dir {
				return true
			}
		}
	}
	return false
}

// TestSalesforceLoginIsOneSalesforceAccepts: every overlay logs in with the JWT bearer flow, whose key the
// Salesforce stages mount from the Secret, or points the client credentials flow at a My Domain; never
// client credentials at login.salesforce.com or test.salesforce.com, which Salesforce refuses ("request not
// supported on this domain").
func TestSalesforceLoginIsOneSalesforceAccepts(t *testing.T) {
	for _, overlay := range []string{"dev", "prod"} {
		r := render(t, overlay)
		cfg := r.configMaps["cosell-config"].Data
		host := strings.TrimSuffix(strings.TrimPrefix(cfg["COSELL_SF_URL"], "https://"), "/")
		switch auth := cfg["COSELL_SF_AUTH"]; auth {
		case "jwt":
			for _, stage := range []string{"sf-ingest", "sf-writer"} {
				env := map[string]string{}
				for _, e := range r.deployments[stage].Spec.Template.Spec.Containers[0].Env {
					env[e.Name] = e.Value
				}
				if !strings.HasPrefix(env["COSELL_SF_JWT_KEY_FILE"], "/etc/cosell/salesforce/") ||
					!mountsSecret(r.deployments[stage], "cosell-salesforce", "/etc/cosell/salesforce") {
					t.Errorf("%s: %s logs in with JWT but does not mount its key from the Secret cosell-salesforce (COSELL_SF_JWT_KEY_FILE=%q)",
						overlay, stage, env["COSELL_SF_JWT_KEY_FILE"])
				}
			}
		case "client-credentials", "":
			if host == "login.salesforce.com" || host == "test.salesforce.com" {
				t.Errorf("%s: client credentials against %s, which Salesforce refuses: use the org's My Domain or COSELL_SF_AUTH=jwt", overlay, host)
			}
		default:
			t.Errorf("%s: COSELL_SF_AUTH=%q", overlay, auth)
		}
	}
}

// mountsSecret reports whether d's first container mounts the Secret secret at dir.
func mountsSecret(d *appsv1.Deployment, secret, dir string) bool {
	ps := d.Spec.Template.Spec
	for _, v := range ps.Volumes {
		if v.Secret == nil || v.Secret.SecretName != secret {
			continue
		}
		for _, m := range ps.Containers[0].VolumeMounts {
			if m.Name == v.Name && m.MountPath == dir {
				return true
			}
		}
	}
	return false
}
