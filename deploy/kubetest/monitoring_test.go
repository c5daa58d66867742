package kubetest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// runbookBase is where every alert's runbook_url points: docs/runbooks.md as GitHub renders it.
const runbookBase = "https://github.com/cosell-dev/cosell/blob/main/docs/runbooks.md#"

// TestEveryStageIsScraped checks each overlay renders one ServiceMonitor whose Service selects every
// stage's pods and whose endpoint is the port that serves /metrics in every stage's container.
func TestEveryStageIsScraped(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			r := render(t, overlay)
			if len(r.monitors) != 1 {
				t.Fatalf("%d ServiceMonitors, want 1", len(r.monitors))
			}
			sm := r.monitors[0]
			sel, err := labels.ValidatedSelectorFromSet(sm.Spec.Selector.MatchLabels)
			if err != nil {
				t.Fatal(err)
			}
			var svcName string
			for name, svc := range r.services {
				if sel.Matches(labels.Set(svc.Labels)) {
					if svcName != "" {
						t.Errorf("the ServiceMonitor selects both %s and %s", svcName, name)
					}
					svcName = name
				}
			}
			svc := r.services[svcName]
			if svc == nil {
				t.Fatalf("the ServiceMonitor's selector %v matches no rendered Service", sm.Spec.Selector.MatchLabels)
			}
			if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Path != "/metrics" {
				t.Fatalf("endpoints %+v, want one scraping /metrics", sm.Spec.Endpoints)
			}
			port := sm.Spec.Endpoints[0].Port
			i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == port })
			if i < 0 {
				t.Fatalf("the ServiceMonitor scrapes port %q, which Service %s does not have", port, svcName)
			}
			target := svc.Spec.Ports[i].TargetPort.StrVal
			for name, d := range r.deployments {
				if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
					t.Errorf("Service %s does not select %s's pods: %s is not scraped", svcName, name, name)
				}
				c := d.Spec.Template.Spec.Containers[0]
				if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == target }) {
					t.Errorf("%s has no container port %q for the scrape", name, target)
				}
				if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Port.StrVal != target {
					t.Errorf("%s: /metrics is scraped on %q, which is not its admin port", name, target)
				}
				i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == target })
				if i >= 0 && !scrapeAllowed(r, d.Spec.Template.Labels, c.Ports[i].ContainerPort) {
					t.Errorf("%s: no NetworkPolicy lets Prometheus (namespace %q) reach port %d under the default deny", name, monitoringNamespace, c.Ports[i].ContainerPort)
				}
			}
		})
	}
}

// TestAlertRulesHaveRunbooks checks each overlay renders the PrometheusRule; that each alert has a severity,
// a summary and a runbook_url whose anchor is a heading of docs/runbooks.md; that every runbook section is
// an alert; and that every metric an expression uses is one the services export.
func TestAlertRulesHaveRunbooks(t *testing.T) {
	anchors := runbookAnchors(t)
	metrics := serviceMetrics(t)
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			r := render(t, overlay)
			if len(r.rules) != 1 {
				t.Fatalf("%d PrometheusRules, want 1", len(r.rules))
			}
			alerts := map[string]bool{}
			for _, g := range r.rules[0].Spec.Groups {
				for _, rule := range g.Rules {
					if rule.Alert == "" {
						t.Errorf("group %s has a recording rule %q; cosell ships alerts only", g.Name, rule.Record)
						continue
					}
					alerts[strings.ToLower(rule.Alert)] = true
					if s := rule.Labels["severity"]; s != "warning" && s != "critical" {
						t.Errorf("%s: severity %q, want warning or critical", rule.Alert, s)
					}
					if rule.Annotations["summary"] == "" {
						t.Errorf("%s has no summary", rule.Alert)
					}
					url := rule.Annotations["runbook_url"]
					if anchor, ok := strings.CutPrefix(url, runbookBase); !ok || !anchors[anchor] {
						t.Errorf("%s: runbook_url %q is not %s<a heading of docs/runbooks.md>", rule.Alert, url, runbookBase)
					} else if anchor != strings.ToLower(rule.Alert) {
						t.Errorf("%s: runbook_url points at #%s, not at its own section", rule.Alert, anchor)
					}
					expr := rule.Expr.String()
					for _, m := range regexp.MustCompile(`\bcosell_[a-z_]+`).FindAllString(expr, -1) {
						base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count"), "_sum")
						if !metrics[m] && !metrics[base] {
							t.Errorf("%s uses %s, which no service exports", rule.Alert, m)
						}
					}
					if strings.Contains(expr, `job="`) && !strings.Contains(expr, `job="`+serviceMonitored(r)+`"`) {
						t.Errorf("%s: %s names a job other than the scraped Service %s", rule.Alert, expr, serviceMonitored(r))
					}
				}
			}
			for anchor := range anchors {
				if strings.HasPrefix(anchor, "cosell") && !alerts[anchor] {
					t.Errorf("docs/runbooks.md has a section #%s for no alert", anchor)
				}
			}
			if len(alerts) < 10 {
				t.Errorf("%d alerts: %v", len(alerts), alerts)
			}
		})
	}
}

// monitoringNamespace is where the manifests expect Prometheus (kube-prometheus-stack's usual namespace).
const monitoringNamespace = "monitoring"

// scrapeAllowed reports whether a NetworkPolicy admits ingress to pods with podLabels on port from the
// monitoring namespace.
func scrapeAllowed(r *rendered, podLabels map[string]string, port int32) bool {
	for _, p := range r.policies {
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(podLabels)) {
			continue
		}
		for _, rule := range p.Spec.Ingress {
			portOK := len(rule.Ports) == 0 || slices.ContainsFunc(rule.Ports, func(np networkingv1.NetworkPolicyPort) bool {
				return np.Port != nil && np.Port.IntValue() == int(port)
			})
			fromOK := slices.ContainsFunc(rule.From, func(peer networkingv1.NetworkPolicyPeer) bool {
				return peer.NamespaceSelector != nil && peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == monitoringNamespace
			})
			if portOK && fromOK {
				return true
			}
		}
	}
	return false
}

// runbookAnchors returns the anchors GitHub gives the headings of docs/runbooks.md (lower case; spaces to
// hyphens; punctuation other than hyphens and underscores dropped).
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(strings.TrimSpace(h)), ""), " ", "-")] = true
		}
	}
	// The runbooks' links to each other must land too.
	for _, m := range regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(string(doc), -1) {
		if !anchors[m[1]] {
			t.Errorf("docs/runbooks.md links to #%s, which is none of its headings", m[1])
		}
	}
	return anchors
}

// serviceMetrics returns the metric names the services register: `Namespace: "cosell", Name: "x"` in a
// Prometheus options struct, or a literal "cosell_x" descriptor name.
func serviceMetrics(t *testing.T) map[string]bool {
	t.Helper()
	opts := regexp.MustCompile(`Namespace:\s*"cosell",\s*Name:\s*"([a-z_]+)"`)
	literal := regexp.MustCompile(`"(cosell_[a-z_]+)"`)
	names := map[string]bool{}
	walkServiceSources(t, func(src []byte) {
		for _, m := range opts.FindAllSubmatch(src, -1) {
			names["cosell_"+string(m[1])] = true
		}
		for _, m := range literal.FindAllSubmatch(src, -1) {
			names[string(m[1])] = true
		}
	})
	return names
}

func serviceMonitored(r *rendered) string {
	sel, _ := labels.ValidatedSelectorFromSet(r.monitors[0].Spec.Selector.MatchLabels)
	for name, svc := range r.services {
		if sel != nil && sel.Matches(labels.Set(svc.Labels)) {
			return name
		}
	}
	return ""
}
