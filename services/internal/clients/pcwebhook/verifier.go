// Package pcwebhook verifies Partner Center webhook deliveries: the signing certificate is fetched only from a
// pinned host and path (no redirects), chained to trusted roots through intermediates (a configured bundle, or
// the leaf's Authority Information Access URL on a pinned host, since the certificate URL serves the leaf only),
// issued by Microsoft Corporation, and must have signed the exact body bytes with RSA PKCS#1 v1.5 SHA-256.
// Downloads are cached per URL (failures too) and rate-limited, so forged deliveries cannot make a receiver
// download on demand.
package pcwebhook

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
	"golang.org/x/time/rate"

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
	// ErrFetchLimited: a certificate was needed but the download budget is spent; the receiver answers 503 so
	// Partner Center retries the delivery (it tries 10 times).
	ErrFetchLimited = errors.New("pcwebhook: certificate download rate exceeded; retry later")
)

// DefaultIntermediateHosts are the hosts an intermediate certificate may be fetched from (the leaf's AIA "CA
// Issuers" URL): Microsoft's PKI repository (https://www.microsoft.com/pkiops/docs/repository.htm, AIA URLs under
// http://www.microsoft.com/pkiops/certs/) and DigiCert's, which issues Microsoft's TLS roots.
var DefaultIntermediateHosts = []string{"www.microsoft.com", "cacerts.digicert.com"}

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
	// IntermediateHosts are the hosts the leaf's AIA URL may name for fetching its issuer (http or https: the
	// chain check, not the transport, vouches for it); default DefaultIntermediateHosts. Set Intermediates to a
	// bundle instead to never fetch one.
	IntermediateHosts []string
	// FailureTTL is how long a failed download or chain is remembered, so it is not retried on every forged
	// delivery; default 1m.
	FailureTTL time.Duration
	// FetchEvery and FetchBurst bound certificate downloads (leaf or intermediate, all URLs together): one per
	// FetchEvery on average, FetchBurst at once; default one per 10s, burst 4.
	FetchEvery time.Duration
	FetchBurst int

	mu      sync.Mutex
	cache   map[string]cachedCert // leaf and intermediate certificates, and failures, by URL
	fetches int
	limiter *rate.Limiter
	fetchMu sync.Mutex // one download at a time: concurrent deliveries wait for the first
}

type cachedCert struct {
	cert    *x509.Certificate
	err     error // a remembered failure
	expires time.Time
}

// Fetches counts the certificate downloads made (for tests and metrics).
func (v *Verifier) Fetches() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.fetches
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
	case errors.Is(err, ErrFetchLimited):
		return http.StatusServiceUnavailable
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

// certificate returns the verified leaf at certURL: from the cache, or downloaded, chained (fetching its
// intermediate if needed) and checked. Failures are cached for FailureTTL.
func (v *Verifier) certificate(ctx context.Context, certURL string) (*x509.Certificate, error) {
	if c, ok := v.cached(certURL); ok {
		return c.cert, c.err
	}
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	if c, ok := v.cached(certURL); ok { // another delivery fetched it meanwhile
		return c.cert, c.err
	}
	cert, err := v.fetchLeaf(ctx, certURL)
	if errors.Is(err, ErrFetchLimited) || ctx.Err() != nil {
		return nil, err // not the certificate's fault: try again on the next delivery
	}
	v.remember(certURL, cert, err)
	return cert, err
}

func (v *Verifier) fetchLeaf(ctx context.Context, certURL string) (*x509.Certificate, error) {
	der, err := v.download(ctx, certURL)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not a DER certificate: %v", ErrCertificate, certURL, err)
	}
	if err := v.verifyChain(ctx, cert); err != nil {
		return nil, err
	}
	if !issuedByMicrosoft(cert) {
		return nil, fmt.Errorf("%w: issuer %q is not O=Microsoft Corporation", ErrCertificate, cert.Issuer.String())
	}
	return cert, nil
}

// verifyChain checks cert chains to Roots, with the configured intermediates and, when those do not suffice,
// the issuer named by the leaf's AIA URL if that is on a pinned intermediate host.
func (v *Verifier) verifyChain(ctx context.Context, cert *x509.Certificate) error {
	opts := x509.VerifyOptions{Roots: v.Roots, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if v.Intermediates != nil {
		opts.Intermediates = v.Intermediates.Clone()
	}
	_, err := cert.Verify(opts)
	if err == nil {
		return nil
	}
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) || len(cert.IssuingCertificateURL) == 0 {
		return fmt.Errorf("%w: chain: %v", ErrCertificate, err)
	}
	var fetchErr error
	for _, u := range cert.IssuingCertificateURL {
		inter, ferr := v.intermediate(ctx, u)
		if ferr != nil {
			fetchErr = ferr
			continue
		}
		opts.Intermediates.AddCert(inter)
	}
	if _, err2 := cert.Verify(opts); err2 != nil {
		if fetchErr != nil {
			return fetchErr
		}
		return fmt.Errorf("%w: chain: %v", ErrCertificate, err2)
	}
	return nil
}

// intermediate returns the CA certificate at an AIA URL on a pinned host, cached like leaves.
func (v *Verifier) intermediate(ctx context.Context, raw string) (*x509.Certificate, error) {
	if c, ok := v.cached(raw); ok {
		return c.cert, c.err
	}
	u, err := url.Parse(raw)
	hosts := v.IntermediateHosts
	if hosts == nil {
		hosts = DefaultIntermediateHosts
	}
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.RawQuery != "":
		return nil, fmt.Errorf("%w: the issuer URL %q is not a plain http(s) URL", ErrCertificate, raw)
	case !slices.ContainsFunc(hosts, func(h string) bool { return strings.EqualFold(h, u.Host) }):
		return nil, fmt.Errorf("%w: the issuer URL %q is not on a trusted intermediate host (%s); configure the intermediate bundle instead",
			ErrCertificate, raw, strings.Join(hosts, ", "))
	}
	der, err := v.download(ctx, raw)
	if errors.Is(err, ErrFetchLimited) {
		return nil, err
	}
	var cert *x509.Certificate
	if err == nil {
		if cert, err = x509.ParseCertificate(der); err != nil {
			err = fmt.Errorf("%w: the issuer at %s is not a DER certificate: %v", ErrCertificate, raw, err)
		} else if !cert.IsCA {
			cert, err = nil, fmt.Errorf("%w: the certificate at %s is not a CA", ErrCertificate, raw)
		}
	}
	v.remember(raw, cert, err)
	return cert, err
}

func (v *Verifier) cached(key string) (cachedCert, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.cache[key]
	if ok && time.Now().Before(c.expires) {
		return c, true
	}
	return cachedCert{}, false
}

func (v *Verifier) remember(key string, cert *x509.Certificate, err error) {
	ttl := v.CacheTTL
	if ttl <= 0 {
		ttl = time.Hour
	}
	if err != nil {
		if ttl = v.FailureTTL; ttl <= 0 {
			ttl = time.Minute
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cache == nil {
		v.cache = map[string]cachedCert{}
	}
	for k, c := range v.cache { // keep the cache small: forged URLs must not grow it without bound
		if len(v.cache) < 256 {
			break
		}
		if time.Now().After(c.expires) || c.err != nil {
			delete(v.cache, k)
		}
	}
	v.cache[key] = cachedCert{cert: cert, err: err, expires: time.Now().Add(ttl)}
}

// allowFetch takes one download from the budget.
func (v *Verifier) allowFetch() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.limiter == nil {
		every, burst := v.FetchEvery, v.FetchBurst
		if every <= 0 {
			every = 10 * time.Second
		}
		if burst <= 0 {
			burst = 4
		}
		v.limiter = rate.NewLimiter(rate.Every(every), burst)
	}
	if !v.limiter.Allow() {
		return false
	}
	v.fetches++
	return true
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
	if !v.allowFetch() {
		return nil, fmt.Errorf("%w (%s)", ErrFetchLimited, certURL)
	}
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

// ParseNotification decodes a delivery body tolerantly and returns the referral id, the last path segment of
// ResourceUri (Partner Center's ResourceUri host and path differ from the Referrals API's, so only the id is used).
// Fields it does not know are ignored and both AuditUri and AuditUrl are accepted (Microsoft's docs show both):
// a field Partner Center adds or renames must not make cosell refuse every delivery. What it needs —
// EventName and ResourceUri — it requires.
//
// The body is decoded by JSON v2 under encoding/json's rules (jsonv1.DefaultOptionsV1: names in any case, the
// last of a name given twice; data after the object refused): on every delivery, 2 allocations where
// encoding/json's Decoder made 12 (BenchmarkParseNotification).
func ParseNotification(body []byte) (pc.WebhookNotification, string, error) {
	var n pc.WebhookNotification
	if err := jsonv2.Unmarshal(body, &n, jsonv1.DefaultOptionsV1()); err != nil {
		return n, "", fmt.Errorf("pcwebhook: notification body: %w", err)
	}
	if n.AuditURI == nil && n.AuditURL != nil {
		n.AuditURI = n.AuditURL
	}
	n.AuditURL = nil
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
