package kubetest

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/deploy/internal/stagetest"
)

// statusSecret is the Secret of the status page's logins (docs/operations.md#status-page-sign-in): keys
// users (the COSELL_AUTH_USERS_FILE), session-key and, with the status-oidc component, oidc-client-secret.
const statusSecret = "cosell-status"

// statusAuth is how an overlay lets people into the status page, read off the rendered auditor.
type statusAuth struct {
	env        map[string]string // the auditor's variables: cosell-config, then its own env values
	secretEnv  map[string]string // variable → key of statusSecret
	usersMount string            // where the users key is mounted ("" = not mounted)
	ingress    *networkingv1.Ingress
}

func readStatusAuth(t *testing.T, r *rendered) statusAuth {
	t.Helper()
	d := r.deployments[contracts.StageAuditor]
	if d == nil {
		t.Fatal("no auditor Deployment")
	}
	sa := statusAuth{env: map[string]string{}, secretEnv: map[string]string{}}
	for k, v := range r.configMaps["cosell-config"].Data {
		sa.env[k] = v
	}
	c := d.Spec.Template.Spec.Containers[0]
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == statusSecret:
			sa.secretEnv[e.Name] = e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom == nil:
			sa.env[e.Name] = e.Value
		}
	}
	vols := map[string]*corev1.Volume{}
	for i := range d.Spec.Template.Spec.Volumes {
		vols[d.Spec.Template.Spec.Volumes[i].Name] = &d.Spec.Template.Spec.Volumes[i]
	}
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		if v == nil || v.Secret == nil || v.Secret.SecretName != statusSecret {
			continue
		}
		for _, it := range v.Secret.Items {
			if it.Key == "users" {
				sa.usersMount = path.Join(m.MountPath, it.Path)
			}
		}
	}
	for _, i := range r.ingresses {
		if i.Name == "status" {
			sa.ingress = i
		}
	}
	// No other stage may read the status page's Secret.
	for name, other := range r.deployments {
		if name == contracts.StageAuditor {
			continue
		}
		for _, v := range other.Spec.Template.Spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName == statusSecret {
				t.Errorf("%s mounts %s", name, statusSecret)
			}
		}
	}
	return sa
}

// TestStatusPageHasAWayIn: in every overlay the auditor reads its logins from the Secret cosell-status
// (the users file mounted where COSELL_AUTH_USERS_FILE points, the session key shared by its replicas),
// and in prod signs people in with Entra ID at the status Ingress's host, which routes only the page's
// paths over TLS and is let through by the NetworkPolicies. Then the auditor binary runs with exactly the
// rendered settings (the Secret laid out as it is mounted): a login from the users file reads the API, a
// caller without one is refused, and in prod the sign-in page offers Entra ID.
func TestStatusPageHasAWayIn(t *testing.T) {
	bin := stagetest.Build(t, filepath.Join("..", ".."), contracts.StageAuditor)
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			r := render(t, overlay)
			sa := readStatusAuth(t, r)
			if sa.usersMount == "" || sa.env["COSELL_AUTH_USERS_FILE"] != sa.usersMount {
				t.Errorf("COSELL_AUTH_USERS_FILE=%q, users key of %s mounted at %q: they must agree", sa.env["COSELL_AUTH_USERS_FILE"], statusSecret, sa.usersMount)
			}
			if sa.secretEnv["COSELL_AUTH_SESSION_KEY"] != "session-key" {
				t.Errorf("COSELL_AUTH_SESSION_KEY must come from %s/session-key: %v", statusSecret, sa.secretEnv)
			}
			oidc := sa.env["COSELL_AUTH_OIDC_ISSUER"] != ""
			if overlay == "prod" {
				checkStatusOIDC(t, r, sa)
			} else if oidc || sa.ingress != nil {
				t.Errorf("%s: the status page is published or signs in with OIDC; dev reaches it by port-forward", overlay)
			}

			// The rendered settings, run.
			ns := stagetest.NATS(t, nil)
			mount := filepath.Join(t.TempDir(), "status")
			if err := os.MkdirAll(mount, 0o700); err != nil {
				t.Fatal(err)
			}
			opSecret, viewSecret := rand.Text(), rand.Text()
			users := fmt.Sprintf("ann operator %s\nvic viewer %s\n", opSecret, viewSecret)
			if err := os.WriteFile(filepath.Join(mount, path.Base(sa.usersMount)), []byte(users), 0o400); err != nil {
				t.Fatal(err)
			}
			secret := map[string]string{"session-key": rand.Text() + rand.Text(), "oidc-client-secret": rand.Text()}
			env := []string{"COSELL_NATS_URL=" + ns.ClientURL(), "COSELL_ADMIN_ADDR=127.0.0.1:0", "COSELL_PROVISION=true",
				"COSELL_AUTH_USERS_FILE=" + filepath.Join(mount, path.Base(sa.usersMount))}
			for k, v := range sa.env {
				if strings.HasPrefix(k, "COSELL_AUTH_") && k != "COSELL_AUTH_USERS_FILE" || strings.HasPrefix(k, "COSELL_STATUS_") {
					env = append(env, k+"="+v)
				}
			}
			for k, key := range sa.secretEnv {
				env = append(env, k+"="+secret[key])
			}
			stage := stagetest.Start(t, bin, env, false)
			addr := stage.AdminAddr(60 * time.Second)
			stagetest.Eventually(t, 60*time.Second, "auditor ready", func() error { return stagetest.GetOK(addr, "/readyz") })
			call := func(path, bearer string) (int, string) {
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
				if bearer != "" {
					req.Header.Set("Authorization", "Bearer "+bearer)
				}
				c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if code, body := call("/api/status", viewSecret); code != http.StatusOK {
				t.Errorf("the viewer of the mounted users file: %d %s\n%s", code, body, stage.Output())
			}
			if code, _ := call("/api/status", ""); code != http.StatusUnauthorized {
				t.Errorf("no login: %d, want 401", code)
			}
			code, body := call("/login", "")
			if code != http.StatusOK || oidc != strings.Contains(body, "Sign in with Microsoft Entra ID") {
				t.Errorf("sign-in page (OIDC %v): %d\n%s", oidc, code, body)
			}
			_ = stage.Stop(60 * time.Second)
		})
	}
}

// checkStatusOIDC: prod signs in with Entra ID's v2.0 endpoint, the client secret from the Secret, the
// redirect URL on the status Ingress's host, and only the page's paths published, over TLS.
func checkStatusOIDC(t *testing.T, r *rendered, sa statusAuth) {
	t.Helper()
	iss := sa.env["COSELL_AUTH_OIDC_ISSUER"]
	if !strings.HasPrefix(iss, "https://login.microsoftonline.com/") || !strings.HasSuffix(iss, "/v2.0") {
		t.Errorf("COSELL_AUTH_OIDC_ISSUER %q is not an Entra ID v2.0 issuer (https://login.microsoftonline.com/TENANT/v2.0)", iss)
	}
	if sa.env["COSELL_AUTH_OIDC_CLIENT_ID"] == "" || sa.secretEnv["COSELL_AUTH_OIDC_CLIENT_SECRET"] != "oidc-client-secret" {
		t.Errorf("the client id must be set and the secret come from %s/oidc-client-secret: %v", statusSecret, sa.secretEnv)
	}
	ing := sa.ingress
	if ing == nil || len(ing.Spec.Rules) != 1 || len(ing.Spec.TLS) == 0 {
		t.Fatalf("no status Ingress with one host over TLS: %+v", ing)
	}
	host := ing.Spec.Rules[0].Host
	if want := "https://" + host + "/auth/callback"; sa.env["COSELL_AUTH_OIDC_REDIRECT_URL"] != want {
		t.Errorf("COSELL_AUTH_OIDC_REDIRECT_URL %q, want %q (the Ingress's host)", sa.env["COSELL_AUTH_OIDC_REDIRECT_URL"], want)
	}
	if !slices.Contains(ing.Spec.TLS[0].Hosts, host) {
		t.Errorf("TLS hosts %v do not cover %s", ing.Spec.TLS[0].Hosts, host)
	}
	for _, p := range ing.Spec.Rules[0].HTTP.Paths {
		if p.Backend.Service == nil || p.Backend.Service.Name != "auditor" {
			t.Errorf("status Ingress path %s goes to %+v", p.Path, p.Backend)
		}
		for _, admin := range []string{"/metrics", "/healthz", "/readyz"} {
			if p.Path == admin || (p.PathType != nil && *p.PathType == networkingv1.PathTypePrefix && (p.Path == "/" || strings.HasPrefix(admin, p.Path+"/"))) {
				t.Errorf("status Ingress path %s publishes %s", p.Path, admin)
			}
		}
	}
	var in, out bool
	for _, p := range r.policies {
		if p.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != contracts.StageAuditor {
			continue
		}
		for _, rule := range p.Spec.Ingress {
			for _, f := range rule.From {
				in = in || (f.NamespaceSelector != nil && f.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "ingress-nginx")
			}
		}
		for _, rule := range p.Spec.Egress {
			for _, port := range rule.Ports {
				out = out || port.Port.IntValue() == 443
			}
		}
	}
	if !in || !out {
		t.Errorf("NetworkPolicies: ingress-nginx → auditor %v, auditor → 443 (Entra ID) %v", in, out)
	}
}
