package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/cosell-dev/cosell/deploy/internal/stagetest"
)

// certificate is cert-manager's cert-manager.io/v1 Certificate, the fields cosell uses; decoding strictly
// into it rejects a misspelt or misplaced field.
type certificate struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		SecretName  string   `json:"secretName"`
		CommonName  string   `json:"commonName,omitempty"`
		DNSNames    []string `json:"dnsNames,omitempty"`
		IsCA        bool     `json:"isCA,omitempty"`
		Usages      []string `json:"usages,omitempty"`
		Duration    string   `json:"duration,omitempty"`
		RenewBefore string   `json:"renewBefore,omitempty"`
		PrivateKey  *struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy,omitempty"`
		} `json:"privateKey,omitempty"`
		IssuerRef issuerRef `json:"issuerRef"`
	} `json:"spec"`
}

type issuerRef struct {
	Group string `json:"group"`
	Kind  string `json:"kind"`
	Name  string `json:"name"`
}

// clusterIssuer is cert-manager's ClusterIssuer, the two kinds deploy/nats/ca-issuer.yaml uses.
type clusterIssuer struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
	} `json:"spec"`
}

// natsTLSValues is the part of deploy/nats/values-tls.yaml this test checks; the chart's values have no
// schema of their own to decode against, so only its extraResources are decoded strictly.
type natsTLSValues struct {
	Config struct {
		NATS struct {
			TLS struct {
				Enabled    bool           `json:"enabled"`
				SecretName string         `json:"secretName"`
				Merge      map[string]any `json:"merge"`
			} `json:"tls"`
		} `json:"nats"`
	} `json:"config"`
	TLSCA struct {
		Enabled    bool   `json:"enabled"`
		SecretName string `json:"secretName"`
		Key        string `json:"key"`
	} `json:"tlsCA"`
	NatsBox struct {
		Contexts struct {
			Default struct {
				TLS struct {
					SecretName string `json:"secretName"`
				} `json:"tls"`
			} `json:"default"`
		} `json:"contexts"`
	} `json:"natsBox"`
	ExtraResources []map[string]any `json:"extraResources"`
}

// prodTLS is what the prod overlay tells a stage about NATS TLS.
type prodTLS struct {
	url                 *url.URL
	ca, cert, key       string // the paths the stages are given
	secret, mount       string // the Secret mounted and where
	clientCertIssuerRef issuerRef
}

// renderProdTLS checks the prod overlay wires NATS TLS into every pod the same way and returns it.
func renderProdTLS(t *testing.T) prodTLS {
	t.Helper()
	r := render(t, "prod")
	cfg := r.configMaps["cosell-config"].Data
	u, err := url.Parse(cfg["COSELL_NATS_URL"])
	if err != nil || u.Scheme != "tls" {
		t.Fatalf("prod COSELL_NATS_URL %q: want tls://", cfg["COSELL_NATS_URL"])
	}
	p := prodTLS{url: u, ca: cfg["COSELL_NATS_TLS_CA"], cert: cfg["COSELL_NATS_TLS_CERT"], key: cfg["COSELL_NATS_TLS_KEY"]}
	// cert-manager writes ca.crt, tls.crt and tls.key into the Certificate's Secret.
	for file, want := range map[string]string{p.ca: "ca.crt", p.cert: "tls.crt", p.key: "tls.key"} {
		if path.Base(file) != want {
			t.Errorf("prod points a stage at %q, want the Secret's %s", file, want)
		}
	}
	p.mount = path.Dir(p.ca)
	if len(r.certs) != 1 {
		t.Fatalf("prod renders %d Certificates, want cosell's NATS client certificate", len(r.certs))
	}
	c := r.certs[0]
	p.secret, p.clientCertIssuerRef = c.Spec.SecretName, c.Spec.IssuerRef
	if !slices.Contains(c.Spec.Usages, "client auth") || c.Spec.IssuerRef.Kind != "ClusterIssuer" {
		t.Errorf("client Certificate %+v: want client auth from a ClusterIssuer", c.Spec)
	}
	pods := map[string]*podSpec{}
	for name, d := range r.deployments {
		pods[name] = &podSpec{d.Spec.Template.Spec.Volumes, d.Spec.Template.Spec.Containers[0].VolumeMounts}
	}
	for _, j := range r.jobs {
		pods[j.Name] = &podSpec{j.Spec.Template.Spec.Volumes, j.Spec.Template.Spec.Containers[0].VolumeMounts}
	}
	for name, ps := range pods {
		if !ps.mountsSecret(p.secret, p.mount) {
			t.Errorf("%s does not mount the Secret %s at %s", name, p.secret, p.mount)
		}
	}
	return p
}

type podSpec struct {
	volumes []corev1.Volume
	mounts  []corev1.VolumeMount
}

func (ps *podSpec) mountsSecret(secret, dir string) bool {
	for _, m := range ps.mounts {
		for _, v := range ps.volumes {
			if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == secret && m.MountPath == dir && m.ReadOnly {
				return true
			}
		}
	}
	return false
}

// TestNATSServerAndStagesShareOneCA checks the NATS chart values, the CA bootstrap and the prod overlay fit
// together: the server's certificate names the host the stages dial, comes from the same issuer as the
// stages' client certificate, is the one the chart serves, and the server requires client certificates.
func TestNATSServerAndStagesShareOneCA(t *testing.T) {
	p := renderProdTLS(t)
	raw, err := os.ReadFile(filepath.Join("..", "nats", "values-tls.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v natsTLSValues
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if !v.Config.NATS.TLS.Enabled || v.Config.NATS.TLS.Merge["verify"] != true {
		t.Errorf("values-tls.yaml: config.nats.tls %+v, want enabled with verify: true", v.Config.NATS.TLS)
	}
	certs := map[string]*certificate{}
	for _, res := range v.ExtraResources {
		b, _ := yaml.Marshal(res)
		c := &certificate{}
		if err := yaml.UnmarshalStrict(b, c); err != nil {
			t.Errorf("values-tls.yaml: extra resource does not decode strictly as a Certificate: %v", err)
			continue
		}
		certs[c.Spec.SecretName] = c
	}
	server := certs[v.Config.NATS.TLS.SecretName]
	if server == nil {
		t.Fatalf("no Certificate writes the Secret %q the chart serves", v.Config.NATS.TLS.SecretName)
	}
	if !v.TLSCA.Enabled || v.TLSCA.SecretName != server.Spec.SecretName || v.TLSCA.Key != "ca.crt" {
		t.Errorf("tlsCA %+v: want the server Secret's ca.crt", v.TLSCA)
	}
	if !slices.Contains(server.Spec.DNSNames, p.url.Hostname()) || !slices.Contains(server.Spec.Usages, "server auth") {
		t.Errorf("the server certificate names %v (usages %v); the stages dial %s", server.Spec.DNSNames, server.Spec.Usages, p.url.Hostname())
	}
	if box := certs[v.NatsBox.Contexts.Default.TLS.SecretName]; box == nil || !slices.Contains(box.Spec.Usages, "client auth") {
		t.Errorf("nats-box has no client certificate, but the server requires one")
	}
	for _, c := range certs {
		if c.Spec.IssuerRef != p.clientCertIssuerRef {
			t.Errorf("Certificate %s is issued by %+v, the stages' by %+v: they would not trust each other", c.Metadata.Name, c.Spec.IssuerRef, p.clientCertIssuerRef)
		}
	}

	// The CA bootstrap makes exactly that issuer, signing with a CA certificate's Secret.
	issuerDoc, err := os.ReadFile(filepath.Join("..", "nats", "ca-issuer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	issuers, caSecrets := map[string]*clusterIssuer{}, map[string]bool{}
	for _, doc := range strings.Split(string(issuerDoc), "\n---\n") {
		var head struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatal(err)
		}
		switch head.Kind {
		case "ClusterIssuer":
			ci := &clusterIssuer{}
			if err := yaml.UnmarshalStrict([]byte(doc), ci); err != nil {
				t.Errorf("ca-issuer.yaml: ClusterIssuer: %v", err)
			}
			issuers[ci.Metadata.Name] = ci
		case "Certificate":
			c := &certificate{}
			if err := yaml.UnmarshalStrict([]byte(doc), c); err != nil {
				t.Errorf("ca-issuer.yaml: Certificate: %v", err)
			}
			if c.Spec.IsCA && c.Metadata.Namespace == "cert-manager" {
				caSecrets[c.Spec.SecretName] = true
			}
		default:
			t.Errorf("ca-issuer.yaml: unexpected %s", head.Kind)
		}
	}
	ci := issuers[p.clientCertIssuerRef.Name]
	if ci == nil || ci.Spec.CA == nil || !caSecrets[ci.Spec.CA.SecretName] {
		t.Errorf("ca-issuer.yaml does not make the CA ClusterIssuer %q from a CA certificate in cert-manager's namespace", p.clientCertIssuerRef.Name)
	}
}

// TestStageConnectsToNATSWithTheProdTLSSettings generates a CA, a server and a client certificate, lays
// them out as cert-manager's Secret is mounted, and starts the mapper binary with the prod overlay's
// settings against a real nats-server that requires TLS and client certificates: it becomes ready. Without
// the CA it refuses the server's certificate, and without a client certificate the server refuses it.
func TestStageConnectsToNATSWithTheProdTLSSettings(t *testing.T) {
	p := renderProdTLS(t)
	dir := t.TempDir()
	pki := newPKI(t, dir, p.url.Hostname())
	mount := filepath.Join(dir, "mount") // stands for p.mount in the pod
	if err := os.Mkdir(mount, 0o755); err != nil {
		t.Fatal(err)
	}
	for file, pemBytes := range map[string][]byte{p.ca: pki.caPEM, p.cert: pki.clientCert, p.key: pki.clientKey} {
		if err := os.WriteFile(filepath.Join(mount, path.Base(file)), pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	local := func(file string) string { return filepath.Join(mount, path.Base(file)) }

	tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: pki.serverCertFile, KeyFile: pki.serverKeyFile,
		CaFile: pki.caFile, Verify: true, Timeout: 2})
	if err != nil {
		t.Fatal(err)
	}
	ns := stagetest.NATS(t, &server.Options{TLSConfig: tlsConfig, TLS: true, TLSVerify: true, TLSTimeout: 2})
	natsURL := fmt.Sprintf("tls://127.0.0.1:%d", ns.Addr().(*net.TCPAddr).Port)
	bin := stagetest.Build(t, filepath.Join("..", ".."), "mapper")
	env := func(without ...string) []string {
		vars := map[string]string{"COSELL_NATS_URL": natsURL, "COSELL_NATS_TLS_CA": local(p.ca),
			"COSELL_NATS_TLS_CERT": local(p.cert), "COSELL_NATS_TLS_KEY": local(p.key), "COSELL_ADMIN_ADDR": "127.0.0.1:0"}
		var out []string
		for k, v := range vars {
			if !slices.Contains(without, k) {
				out = append(out, k+"="+v)
			}
		}
		return out
	}

	t.Run("with the prod settings it connects", func(t *testing.T) {
		stage := stagetest.Start(t, bin, env(), false)
		addr := stage.AdminAddr(60 * time.Second)
		stagetest.Eventually(t, 60*time.Second, "/readyz over TLS", func() error { return stagetest.GetOK(addr, "/readyz") })
		if err := stage.Stop(60 * time.Second); err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stage.Output())
		}
	})
	for name, c := range map[string]struct {
		without []string
		reason  string // in the connect error; with TLS 1.3 the server's refusal of a missing client
		// certificate arrives after the handshake, as "certificate required" or a closed connection
	}{
		"without the CA it refuses the server":               {[]string{"COSELL_NATS_TLS_CA"}, "certificate signed by unknown authority"},
		"without a client certificate the server refuses it": {[]string{"COSELL_NATS_TLS_CERT", "COSELL_NATS_TLS_KEY"}, "tls"},
	} {
		t.Run(name, func(t *testing.T) {
			stage := stagetest.Start(t, bin, env(c.without...), false)
			addr := stage.AdminAddr(60 * time.Second)
			line := stage.WaitLog(60*time.Second, "a refused NATS connection", func(l map[string]any) bool {
				return l["msg"] == "nats connect failed, retrying"
			})
			e, _ := line["err"].(string)
			if !strings.Contains(e, c.reason) {
				t.Errorf("connect error %q does not say %q", e, c.reason)
			}
			t.Logf("refused: %s", e)
			if err := stagetest.GetOK(addr, "/readyz"); err == nil {
				t.Error("ready although NATS refused the connection")
			}
			_ = stage.Stop(60 * time.Second)
		})
	}
}

// pki is a throw-away CA with a server certificate for 127.0.0.1 and host, and a client certificate.
type pki struct {
	caPEM, clientCert, clientKey          []byte
	caFile, serverCertFile, serverKeyFile string
}

func newPKI(t *testing.T, dir, host string) *pki {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cosell-nats-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, dns []string, ips []net.IP) ([]byte, []byte) {
		key := newKey(t)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, DNSNames: dns, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	}
	p := &pki{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	serverCert, serverKey := issue(2, host, x509.ExtKeyUsageServerAuth, []string{host}, []net.IP{net.ParseIP("127.0.0.1")})
	p.clientCert, p.clientKey = issue(3, "cosell", x509.ExtKeyUsageClientAuth, nil, nil)
	p.caFile, p.serverCertFile, p.serverKeyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	for f, b := range map[string][]byte{p.caFile: p.caPEM, p.serverCertFile: serverCert, p.serverKeyFile: serverKey} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tls.X509KeyPair(serverCert, serverKey); err != nil {
		t.Fatal(err)
	}
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
