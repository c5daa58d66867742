// Package pcwebhook verifies Partner Center webhook deliveries: the signing certificate is fetched only from a
// pinned host and path (no redirects), chained to trusted roots, issued by Microsoft Corporation, and must have
// signed the exact body bytes with RSA PKCS#1 v1.5 SHA-256.
package pcwebhook

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

// DefaultTrustedHost is where Partner Center publishes its notification signing certificate.
const DefaultTrustedHost = "3psostorageacct.blob.core.windows.net"

// Errors Verify wraps; StatusCode maps them to the HTTP answer a receiver should give.
var (
	ErrMissingSignature     = errors.New("pcwebhook: missing signature (Authorization: Signature … or x-ms-signature)")
	ErrMissingCertURL       = errors.New("pcwebhook: missing " + pc.HeaderCertificateURL + " header")
	ErrMissingAlgorithm     = errors.New("pcwebhook: missing " + pc.HeaderSignatureAlgorithm + " header")
	ErrUnsupportedAlgorithm = errors.New("pcwebhook: unsupported signature algorithm")
	ErrUntrustedCertURL     = errors.New("pcwebhook: untrusted certificate URL")
	ErrCertificate          = errors.New("pcwebhook: signing certificate rejected")
	ErrBadSignature         = errors.New("pcwebhook: signature does not match the body")
	ErrBodyTooLarge         = errors.New("pcwebhook: body too large")
)

var certPathRE = regexp.MustCompile(`^/cert/[A-Za-z0-9._-]+\.cer$`)
var certNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+\.cer$`)

// Verifier checks the signature of webhook deliveries. The zero value verifies real Partner Center deliveries;
// tests against pcemu set TrustedHosts, Roots, AllowInsecureHTTP and AllowedPathPrefix. Do not copy a Verifier
// after first use.
type Verifier struct {
	TrustedHosts      []string       // host[:port] exactly as in the URL; default DefaultTrustedHost
	Roots             *x509.CertPool // nil = the system roots
	Intermediates     *x509.CertPool // extra intermediates for chain building (the .cer holds the leaf only)
	HTTPClient        *http.Client   // for the certificate download; its redirects are disabled
	MaxBodyBytes      int64          // default 1 MiB
	AllowInsecureHTTP bool           // accept an http:// certificate URL (tests, dev)
	// AllowedPathPrefix also accepts certificate paths of the form <prefix><name>.cer, e.g. "/_emulator/cert/".
	AllowedPathPrefix string
	CacheTTL          time.Duration // how long a downloaded certificate is trusted; default 1h

	mu    sync.Mutex
	cache map[string]cachedCert
}

type cachedCert struct {
	cert    *x509.Certificate
	expires time.Time
}

// StatusCode is the HTTP status a receiver answers a failed verification with: 400 for missing certificate or
// algorithm headers (the documented behaviour), 413 for a large body, 401 otherwise.
func StatusCode(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrMissingCertURL), errors.Is(err, ErrMissingAlgorithm), errors.Is(err, ErrUnsupportedAlgorithm):
		return http.StatusBadRequest
	case errors.Is(err, ErrBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	default:
		return http.StatusUnauthorized
	}
}

// Verify checks that body was signed by Partner Center, following the documented procedure.
func (v *Verifier) Verify(ctx context.Context, header http.Header, body []byte) error {
	maxBody := v.MaxBodyBytes
	if maxBody <= 0 {
		maxBody = 1 << 20
	}
	if int64(len(body)) > maxBody {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBodyTooLarge, len(body), maxBody)
	}
	sigHeader := header.Get(pc.HeaderMSSignature)
	if sigHeader == "" {
		sigHeader = header.Get("Authorization")
	}
	if sigHeader == "" {
		return ErrMissingSignature
	}
	certURL := header.Get(pc.HeaderCertificateURL)
	if certURL == "" {
		return ErrMissingCertURL
	}
	alg := header.Get(pc.HeaderSignatureAlgorithm)
	if alg == "" {
		return ErrMissingAlgorithm
	}
	if !strings.EqualFold(alg, "rsa-sha256") {
		return fmt.Errorf("%w %q: only rsa-sha256", ErrUnsupportedAlgorithm, alg)
	}
	scheme, b64, ok := strings.Cut(strings.TrimSpace(sigHeader), " ")
	if !ok || !strings.EqualFold(scheme, "Signature") || strings.TrimSpace(b64) == "" {
		return fmt.Errorf("%w: the signature header is not \"Signature <base64>\"", ErrMissingSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return fmt.Errorf("%w: signature is not base64: %v", ErrBadSignature, err)
	}
	if err := v.checkCertURL(certURL); err != nil {
		return err
	}
	cert, err := v.certificate(ctx, certURL)
	if err != nil {
		return err
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: the certificate key is not RSA", ErrCertificate)
	}
	sum := sha256.Sum256(body)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return ErrBadSignature
	}
	return nil
}

// checkCertURL pins the certificate location, so a forged delivery cannot make the receiver fetch an attacker's
// certificate (or any internal URL).
func (v *Verifier) checkCertURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrUntrustedCertURL, raw, err)
	}
	switch {
	case u.Scheme != "https" && !(u.Scheme == "http" && v.AllowInsecureHTTP):
		return fmt.Errorf("%w: %q: scheme must be https", ErrUntrustedCertURL, raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return fmt.Errorf("%w: %q: no userinfo, query or fragment allowed", ErrUntrustedCertURL, raw)
	}
	hosts := v.TrustedHosts
	if len(hosts) == 0 {
		hosts = []string{DefaultTrustedHost}
	}
	trusted := false
	for _, h := range hosts {
		if strings.EqualFold(u.Host, h) {
			trusted = true
		}
	}
	if !trusted {
		return fmt.Errorf("%w: %q: host %q is not trusted", ErrUntrustedCertURL, raw, u.Host)
	}
	p := u.EscapedPath()
	if certPathRE.MatchString(p) {
		return nil
	}
	if pre := v.AllowedPathPrefix; pre != "" && strings.HasPrefix(p, pre) && certNameRE.MatchString(p[len(pre):]) &&
		path.Clean(p) == p {
		return nil
	}
	return fmt.Errorf("%w: %q: path %q is not a certificate path", ErrUntrustedCertURL, raw, p)
}

// certificate downloads (or takes from the cache) the DER certificate and checks its chain and issuer.
func (v *Verifier) certificate(ctx context.Context, certURL string) (*x509.Certificate, error) {
	v.mu.Lock()
	if c, ok := v.cache[certURL]; ok && time.Now().Before(c.expires) {
		v.mu.Unlock()
		return c.cert, nil
	}
	v.mu.Unlock()

	der, err := v.download(ctx, certURL)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not a DER certificate: %v", ErrCertificate, certURL, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: v.Roots, Intermediates: v.Intermediates,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%w: chain: %v", ErrCertificate, err)
	}
	if !issuedByMicrosoft(cert) {
		return nil, fmt.Errorf("%w: issuer %q is not O=Microsoft Corporation", ErrCertificate, cert.Issuer.String())
	}
	ttl := v.CacheTTL
	if ttl <= 0 {
		ttl = time.Hour
	}
	v.mu.Lock()
	if v.cache == nil {
		v.cache = map[string]cachedCert{}
	}
	v.cache[certURL] = cachedCert{cert: cert, expires: time.Now().Add(ttl)}
	v.mu.Unlock()
	return cert, nil
}

func issuedByMicrosoft(c *x509.Certificate) bool {
	for _, o := range c.Issuer.Organization {
		if o == "Microsoft Corporation" {
			return true
		}
	}
	return strings.Contains(c.Issuer.String(), "O=Microsoft Corporation")
}

func (v *Verifier) download(ctx context.Context, certURL string) ([]byte, error) {
	base := v.HTTPClient
	if base == nil {
		base = &http.Client{Timeout: 10 * time.Second}
	}
	hc := *base
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, certURL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: download %s: %v", ErrCertificate, certURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: download %s: status %d (redirects are not followed)", ErrCertificate, certURL, resp.StatusCode)
	}
	der, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10+1))
	if err != nil {
		return nil, fmt.Errorf("%w: download %s: %v", ErrCertificate, certURL, err)
	}
	if len(der) > 64<<10 {
		return nil, fmt.Errorf("%w: %s is larger than 64 KiB", ErrCertificate, certURL)
	}
	return der, nil
}

// ParseNotification decodes a delivery body strictly and returns the referral id, the last path segment of
// ResourceUri (Partner Center's ResourceUri host and path differ from the Referrals API's, so only the id is used).
func ParseNotification(body []byte) (pc.WebhookNotification, string, error) {
	var n pc.WebhookNotification
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&n); err != nil {
		return n, "", fmt.Errorf("pcwebhook: notification body: %w", err)
	}
	if dec.More() {
		return n, "", errors.New("pcwebhook: notification body: data after the JSON object")
	}
	if n.EventName == "" {
		return n, "", errors.New("pcwebhook: notification has no EventName")
	}
	if n.ResourceURI == "" {
		return n, "", fmt.Errorf("pcwebhook: %s notification has no ResourceUri", n.EventName)
	}
	u, err := url.Parse(n.ResourceURI)
	if err != nil {
		return n, "", fmt.Errorf("pcwebhook: %s notification: ResourceUri %q: %w", n.EventName, n.ResourceURI, err)
	}
	id := path.Base(strings.TrimRight(u.Path, "/"))
	if id == "" || id == "." || id == "/" {
		return n, "", fmt.Errorf("pcwebhook: %s notification: ResourceUri %q has no id", n.EventName, n.ResourceURI)
	}
	return n, id, nil
}
