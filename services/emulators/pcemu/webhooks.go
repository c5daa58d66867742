package pcemu

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

const certPath = "/_emulator/cert/pcnotifications-dispatch.microsoft.com.cer"

// maxDeliveryAttempts is how often Partner Center tries a notification before parking it.
const maxDeliveryAttempts = 10

// keepDelivered is how many accepted deliveries Delivered remembers.
const keepDelivered = 100

// Delivery is one notification the receiver accepted, exactly as it was sent (signed body and headers),
// so a test can replay it.
type Delivery struct {
	Notification pc.WebhookNotification
	Body         []byte
	Header       http.Header
}

// Delivered returns the notifications the receiver accepted (2xx), oldest first (the last 100).
func (e *Emulator) Delivered() []Delivery {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.delivered)
}

// NotifyRelated sends a related-referral-created or -updated notification naming referralID, as Partner
// Center does when another referral of an engagement (e.g. Microsoft's own) changes.
func (e *Emulator) NotifyRelated(event, referralID string) error {
	if event != pc.EventRelatedReferralCreated && event != pc.EventRelatedReferralUpdated {
		return fmt.Errorf("pcemu: %q is not a related-referral event", event)
	}
	e.count("seller.related")
	e.mu.Lock()
	now := e.nextTime()
	e.mu.Unlock()
	e.notify(event, referralID, now)
	return nil
}

// availableEvents answers GET /webhooks/v1/registration/events.
var availableEvents = []string{
	pc.EventTestCreated, "subscription-updated", "usagerecords-thresholdExceeded", "invoice-ready",
	pc.EventReferralCreated, pc.EventReferralUpdated, pc.EventRelatedReferralCreated, pc.EventRelatedReferralUpdated,
}

// signer holds the emulator's notification signing identity as Partner Center's is built: a root, an
// intermediate it issued, and the leaf the intermediate issued. The certificate URL serves the leaf only (as
// Microsoft's does); the leaf names the intermediate's URL in its Authority Information Access extension, and
// /_emulator/cert/intermediate.cer serves it.
type signer struct {
	ca      *x509.Certificate // the root
	inter   *x509.Certificate
	interK  *rsa.PrivateKey
	leafKey *multiPrimeKey
	leafT   *x509.Certificate // template, re-issued when the base URL (and so the AIA URL) changes

	mu   sync.Mutex
	leaf *x509.Certificate
}

// intermediatePath is where the emulator serves its intermediate certificate (DER).
const intermediatePath = "/_emulator/cert/intermediate.cer"

// The RSA keys are generated once per process: generating them is the slow part and tests build many emulators.
// The root's and the intermediate's sign only certificates; the leaf's signs every webhook, so it is multi-prime
// (see leafPrimes).
var keys = sync.OnceValues(func() (signingKeys, error) {
	var k signingKeys
	var err error
	if k.root, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return k, err
	}
	if k.inter, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return k, err
	}
	k.leaf, err = generateMultiPrimeKey()
	return k, err
})

type signingKeys struct {
	root, inter *rsa.PrivateKey
	leaf        *multiPrimeKey
}

func serial() *big.Int { n, _ := rand.Int(rand.Reader, big.NewInt(1<<62)); return n }

func newSigner(base string) (*signer, error) {
	k, err := keys()
	if err != nil {
		return nil, err
	}
	rootKey, interKey, leafKey := k.root, k.inter, k.leaf
	now := time.Now()
	msft := func(cn string) pkix.Name {
		return pkix.Name{CommonName: cn, Organization: []string{"Microsoft Corporation"}, Country: []string{"US"}}
	}
	rootT := &x509.Certificate{
		SerialNumber: serial(), Subject: msft("Cosell Emulator Root CA"),
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	ca, err := issue(rootT, rootT, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	interT := &x509.Certificate{
		SerialNumber: serial(), Subject: msft("Cosell Emulator TLS Issuing CA 01"),
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	inter, err := issue(interT, ca, &interKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	s := &signer{ca: ca, inter: inter, interK: interKey, leafKey: leafKey, leafT: &x509.Certificate{
		SerialNumber: serial(), Subject: msft("pcnotifications-dispatch.microsoft.com"),
		DNSNames:  []string{"pcnotifications-dispatch.microsoft.com"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}}
	if err := s.setBase(base); err != nil {
		return nil, err
	}
	return s, nil
}

func issue(tmpl, parent *x509.Certificate, pub *rsa.PublicKey, key *rsa.PrivateKey) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// setBase re-issues the leaf naming base's intermediate URL in its AIA "CA Issuers" field (none without a base).
func (s *signer) setBase(base string) error {
	t := *s.leafT
	t.SerialNumber = serial()
	if base != "" {
		t.IssuingCertificateURL = []string{base + intermediatePath}
	}
	leaf, err := issue(&t, s.inter, s.leafKey.pub, s.interK)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.leaf = leaf
	s.mu.Unlock()
	return nil
}

func (s *signer) leafCert() *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leaf
}

// signature is the base64 RSA PKCS#1 v1.5 SHA-256 signature of the exact body bytes.
func (s *signer) signature(body []byte) (string, error) {
	sum := sha256.Sum256(body)
	sig, err := s.leafKey.signPKCS1v15SHA256(sum[:])
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

func (e *Emulator) serveCert(w http.ResponseWriter, _ *http.Request) {
	e.count("cert")
	w.Header().Set("Content-Type", "application/pkix-cert")
	_, _ = w.Write(e.sign.leafCert().Raw)
}

func (e *Emulator) serveIntermediate(w http.ResponseWriter, _ *http.Request) {
	e.count("cert.intermediate")
	w.Header().Set("Content-Type", "application/pkix-cert")
	_, _ = w.Write(e.sign.inter.Raw)
}

func (e *Emulator) serveRoot(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/pkix-cert")
	_, _ = w.Write(e.sign.ca.Raw)
}

func (e *Emulator) readRegistration(w http.ResponseWriter, r *http.Request) (pc.WebhookRegistration, bool) {
	var reg pc.WebhookRegistration
	if err := decodeStrict(r.Body, &reg); err != nil {
		writeError(w, http.StatusBadRequest, "invalidRequest", "The body is not a webhook registration: "+err.Error(), "")
		return reg, false
	}
	u, err := url.Parse(reg.WebhookURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		writeError(w, http.StatusBadRequest, "invalidRequest", fmt.Sprintf("WebhookUrl '%s' is not an absolute http(s) URL.", reg.WebhookURL), "WebhookUrl")
		return reg, false
	}
	if len(reg.WebhookEvents) == 0 {
		writeError(w, http.StatusBadRequest, "invalidRequest", "WebhookEvents must name at least one event.", "WebhookEvents")
		return reg, false
	}
	for _, ev := range reg.WebhookEvents {
		if !slices.Contains(availableEvents, ev) {
			writeError(w, http.StatusBadRequest, "invalidRequest", fmt.Sprintf("Unknown webhook event '%s'.", ev), "WebhookEvents")
			return reg, false
		}
	}
	return reg, true
}

func (e *Emulator) registerWebhook(w http.ResponseWriter, r *http.Request) {
	reg, ok := e.readRegistration(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	if e.reg != nil {
		cur := *e.reg
		e.mu.Unlock()
		writeError(w, http.StatusConflict, "invalidRequest",
			fmt.Sprintf("A webhook registration already exists (WebhookUrl %s); Partner Center keeps one URL per event: use PUT to overwrite it.", cur.WebhookURL), "WebhookUrl")
		return
	}
	reg.SubscriberID = newGUID()
	e.reg = &reg
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, reg)
}

func (e *Emulator) updateWebhook(w http.ResponseWriter, r *http.Request) {
	reg, ok := e.readRegistration(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	if e.reg != nil {
		reg.SubscriberID = e.reg.SubscriberID
	} else {
		reg.SubscriberID = newGUID()
	}
	e.reg = &reg
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, reg)
}

func (e *Emulator) getWebhook(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	reg := e.reg
	e.mu.Unlock()
	if reg == nil {
		writeError(w, http.StatusNotFound, "itemNotFound", "No webhook registration exists.", "")
		return
	}
	writeJSON(w, http.StatusOK, reg)
}

func (e *Emulator) deleteWebhook(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	had := e.reg != nil
	e.reg = nil
	e.mu.Unlock()
	if !had {
		writeError(w, http.StatusNotFound, "itemNotFound", "No webhook registration exists.", "")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (e *Emulator) webhookEvents(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, availableEvents)
}

// validationLimit and validationWindow are Partner Center's limit on validation events ("A throttle limit of 2 requests per minute is enforced when posting a test-created event",
// learn.microsoft.com/partner-center/developer/partner-center-webhook-events, Test Event).
const (
	validationLimit  = 2
	validationWindow = time.Minute
)

func (e *Emulator) sendValidation(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	reg := e.reg
	if reg == nil || !slices.Contains(reg.WebhookEvents, pc.EventTestCreated) {
		e.mu.Unlock()
		writeError(w, http.StatusBadRequest, "invalidRequest", "Register the test-created event before sending a validation event.", "WebhookEvents")
		return
	}
	now := time.Now()
	e.validationsSent = slices.DeleteFunc(e.validationsSent, func(t time.Time) bool { return now.Sub(t) >= validationWindow })
	if len(e.validationsSent) >= validationLimit {
		wait := int(math.Ceil(e.validationsSent[0].Add(validationWindow).Sub(now).Seconds()))
		e.counts["throttled"]++
		e.mu.Unlock()
		writeThrottled(w, max(wait, 1))
		return
	}
	e.validationsSent = append(e.validationsSent, now)
	id := newGUID()
	st := &pc.WebhookValidationStatus{CorrelationID: id, PartnerID: e.opts.OrganizationID, Status: "pending",
		CallbackURL: reg.WebhookURL, Results: []pc.WebhookValidationResult{}}
	e.validations[id] = st
	changed := e.nextTime()
	uri := e.baseURL + "/webhooks/v1/registration/validationEvents/" + id
	e.mu.Unlock()
	e.enqueue(pc.WebhookNotification{EventName: pc.EventTestCreated, ResourceURI: uri, ResourceName: "test",
		ResourceChangeUTCDate: changeDate(changed)}, id)
	writeJSON(w, http.StatusOK, map[string]string{"correlationId": id})
}

func (e *Emulator) getValidation(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	st, ok := e.validations[r.PathValue("correlationId")]
	var out pc.WebhookValidationStatus
	if ok {
		out = *st
		out.Results = slices.Clone(st.Results)
	}
	e.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "itemNotFound", "No validation event with this correlation id.", "correlationId")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// changeDate renders a stored timestamp the way notifications carry it (.NET round-trip with offset).
func changeDate(ts string) string {
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return ts
	}
	return t.Format("2006-01-02T15:04:05.0000000+00:00")
}

// notify sends a referral event to the registered URL, if the registration subscribes to it; the channel
// is closed once the delivery ends (delivered or parked).
func (e *Emulator) notify(event, referralID, changed string) <-chan struct{} {
	e.mu.Lock()
	uri := e.baseURL + "/engagements/v1/referrals/" + referralID
	e.mu.Unlock()
	return e.enqueue(pc.WebhookNotification{EventName: event, ResourceURI: uri, ResourceName: "referral",
		ResourceChangeUTCDate: changeDate(changed)}, "")
}

// WebhookTiming is when the webhook about a partner's own create or patch is delivered against the
// answer to that call. Partner Center documents none: a receiver must expect it before, during or after.
type WebhookTiming string

const (
	// WebhookWithAnswer starts the delivery as the change is stored, racing the answer (the default).
	WebhookWithAnswer WebhookTiming = ""
	// WebhookBeforeAnswer delivers (and waits for the receiver's answer) before answering the call.
	WebhookBeforeAnswer WebhookTiming = "before"
	// WebhookAfterAnswer delivers once the answer has been written to the caller.
	WebhookAfterAnswer WebhookTiming = "after"
)

// SetWebhookTiming sets when the webhooks about the partner's own creates and patches are delivered.
func (e *Emulator) SetWebhookTiming(t WebhookTiming) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.timing = t
}

// answer writes the answer to a partner's create or patch and delivers the webhook about it at the
// emulator's WebhookTiming.
func (e *Emulator) answer(w http.ResponseWriter, event, referralID, changed string, write func()) {
	e.mu.Lock()
	timing := e.timing
	e.mu.Unlock()
	switch timing {
	case WebhookBeforeAnswer:
		<-e.notify(event, referralID, changed)
		write()
	case WebhookAfterAnswer:
		write()
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		e.notify(event, referralID, changed)
	default:
		e.notify(event, referralID, changed)
		write()
	}
}

// enqueue queues one notification for delivery (webhookQueue: in change order per referral, concurrent
// across referrals); validationID, when set, records the attempts. The channel is closed when the
// delivery ends (at once when nothing is sent).
func (e *Emulator) enqueue(n pc.WebhookNotification, validationID string) <-chan struct{} {
	done := make(chan struct{})
	e.mu.Lock()
	reg := e.reg
	if e.closed || reg == nil || !slices.Contains(reg.WebhookEvents, n.EventName) {
		e.mu.Unlock()
		close(done)
		return done
	}
	if e.faults.DropWebhooks > 0 {
		e.faults.DropWebhooks--
		e.counts["webhooks.dropped"]++
		e.mu.Unlock()
		close(done)
		return done
	}
	o := &outbound{n: n, reg: *reg, validationID: validationID, done: done}
	key := n.ResourceURI
	if e.queue.add(key, o) {
		e.wg.Add(1)
		go e.drain(key, o)
	}
	e.mu.Unlock()
	return done
}

// NotificationShape changes the body of the notifications the emulator sends, as Partner Center may without
// notice: Extra adds fields receivers do not know; Rename renames fields (e.g. AuditUri → AuditUrl, the spelling
// some Microsoft docs use). Receivers must accept both.
type NotificationShape struct {
	Extra  map[string]any
	Rename map[string]string
}

// SetNotificationShape applies shape to every notification sent from now on (the zero value restores the
// documented body).
func (e *Emulator) SetNotificationShape(shape NotificationShape) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.shape = shape
}

func (e *Emulator) notificationBody(n pc.WebhookNotification) ([]byte, error) {
	body, err := json.Marshal(n)
	e.mu.Lock()
	shape := e.shape
	e.mu.Unlock()
	if err != nil || (len(shape.Extra) == 0 && len(shape.Rename) == 0) {
		return body, err
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	for from, to := range shape.Rename {
		if v, ok := m[from]; ok {
			delete(m, from)
			m[to] = v
		}
	}
	for k, v := range shape.Extra {
		m[k] = v
	}
	return json.Marshal(m)
}

// deliver makes up to maxDeliveryAttempts signed POSTs of one notification, the body encoded and signed
// once for all of them.
func (e *Emulator) deliver(o *outbound) {
	n, validationID := o.n, o.validationID
	body, err := e.notificationBody(n)
	if err != nil {
		e.log.Error("marshal notification", "err", err)
		return
	}
	sig, err := e.queue.sign(e.ctx, e.sign, body)
	if err != nil {
		e.log.Error("sign notification", "err", err)
		return
	}
	backoff := e.opts.WebhookBackoff
	for attempt := 1; attempt <= maxDeliveryAttempts; attempt++ {
		select {
		case e.queue.slots <- struct{}{}:
		case <-e.ctx.Done():
			return
		}
		code, msg, sysErr, header := e.post(o.reg, body, sig)
		<-e.queue.slots
		ok := code >= 200 && code < 300
		e.mu.Lock()
		if ok {
			e.counts["webhooks.delivered"]++
			e.delivered = append(e.delivered, Delivery{Notification: n, Body: body, Header: header})
			if len(e.delivered) > keepDelivered {
				e.delivered = slices.Delete(e.delivered, 0, len(e.delivered)-keepDelivered)
			}
		} else {
			e.counts["webhooks.failed_attempts"]++
		}
		if st := e.validations[validationID]; st != nil {
			st.Results = append(st.Results, pc.WebhookValidationResult{ResponseCode: responseCode(code), ResponseMessage: msg,
				SystemError: sysErr, DateTimeUTC: time.Now().UTC().Format(time.RFC3339Nano)})
			switch {
			case ok:
				st.Status = "completed"
			case attempt == maxDeliveryAttempts:
				st.Status = "failed"
			}
		}
		if !ok && attempt == maxDeliveryAttempts {
			e.counts["webhooks.parked"]++
		}
		e.mu.Unlock()
		if ok {
			return
		}
		e.log.Warn("webhook delivery failed", "event", n.EventName, "attempt", attempt, "status", code, "err", msg)
		t := time.NewTimer(backoff)
		select {
		case <-e.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func responseCode(code int) string {
	if code == 0 {
		return "Error"
	}
	return http.StatusText(code)
}

// post makes one delivery attempt of body signed with sig and returns the receiver's status (0 when it
// could not be reached) and the headers it sent.
func (e *Emulator) post(reg pc.WebhookRegistration, body []byte, sig string) (int, string, bool, http.Header) {
	req, err := http.NewRequestWithContext(e.ctx, http.MethodPost, reg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error(), true, nil
	}
	req.Header.Set("Content-Type", "application/json")
	if reg.SignatureTokenToMsSignatureHeader {
		req.Header.Set(pc.HeaderMSSignature, "Signature "+sig)
	} else {
		req.Header.Set("Authorization", "Signature "+sig)
	}
	req.Header.Set(pc.HeaderCertificateURL, e.CertURL())
	req.Header.Set(pc.HeaderSignatureAlgorithm, "rsa-sha256")
	sent := req.Header.Clone()
	resp, err := e.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, err.Error(), true, sent
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(http.MaxBytesReader(nil, resp.Body, 4<<10))
	return resp.StatusCode, b.String(), false, sent
}

// Sign returns the headers Partner Center would send with body: its signature by the emulator's
// certificate, the certificate URL and the algorithm. Tests use it to make deliveries of their own, such as
// a correctly signed but malformed body.
func (e *Emulator) Sign(body []byte) (http.Header, error) {
	sig, err := e.sign.signature(body)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Authorization", "Signature "+sig)
	h.Set(pc.HeaderCertificateURL, e.CertURL())
	h.Set(pc.HeaderSignatureAlgorithm, "rsa-sha256")
	return h, nil
}
