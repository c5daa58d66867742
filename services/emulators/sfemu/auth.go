package sfemu

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

func unescape(s string) (string, error) { return url.PathUnescape(s) }

type tokenError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// Token endpoint refusals, with Salesforce's wording (all 400):
//   - unknown consumer key: invalid_client_id "client identifier invalid";
//   - wrong consumer secret: invalid_client "invalid client credentials" (Salesforce Help, "OAuth 2.0 Client
//     Credentials Flow"; salesforcedictionary.com "invalid_grant" lists the same description);
//   - client credentials on login.salesforce.com or test.salesforce.com: invalid_grant "request not supported
//     on this domain" (github.com/pozil/pub-sub-api-node-client issue 58: the flow needs the org's My Domain);
//   - JWT: "invalid assertion" for a bad signature or malformed token (frankkessler/salesforce-laravel-oauth2-rest
//     issue 68), "audience is invalid" and "user hasn't approved this consumer" (salesforce.stackexchange.com
//     question 184363).
var (
	authFailure        = tokenError{Error: "invalid_grant", Description: "authentication failure"}
	unknownClient      = tokenError{Error: "invalid_client_id", Description: "client identifier invalid"}
	badClientSecret    = tokenError{Error: "invalid_client", Description: "invalid client credentials"}
	notOnThisDomain    = tokenError{Error: "invalid_grant", Description: "request not supported on this domain"}
	invalidAssertion   = tokenError{Error: "invalid_grant", Description: "invalid assertion"}
	invalidAudience    = tokenError{Error: "invalid_grant", Description: "audience is invalid"}
	consumerNotAllowed = tokenError{Error: "invalid_grant", Description: "user hasn't approved this consumer"}
)

// Audiences of a JWT bearer assertion: the login host of production orgs and of sandboxes.
const (
	ProductionAudience = "https://login.salesforce.com"
	SandboxAudience    = "https://test.salesforce.com"
)

// LoginHost serves what login.salesforce.com (or test.salesforce.com) serves to an API client: the token
// endpoint for the username-password and JWT bearer flows, answering with instanceURL (the org's My Domain)
// as instance_url. The client credentials flow is refused there, as Salesforce refuses it: it needs the
// org's My Domain, which the emulator itself (ServeHTTP) models.
func (e *Emulator) LoginHost(instanceURL string) http.Handler {
	instanceURL = strings.TrimSuffix(instanceURL, "/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.TrimSuffix(r.URL.Path, "/") != "/services/oauth2/token" {
			writeError(w, errNotFound())
			return
		}
		e.token(w, r, instanceURL, true)
	})
}

// serveToken implements POST /services/oauth2/token on the org's My Domain (and instance) host for the
// password, client_credentials and jwt-bearer grants; go-salesforce refreshes against the instance URL.
func (e *Emulator) serveToken(w http.ResponseWriter, r *http.Request) {
	e.token(w, r, e.instanceURL(r), false)
}

// token answers a token request; loginHost is true on the shared login host.
func (e *Emulator) token(w http.ResponseWriter, r *http.Request, instance string, loginHost bool) {
	e.mu.Lock()
	e.counts["token"]++
	e.mu.Unlock()
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusBadRequest, tokenError{Error: "invalid_request", Description: "must use HTTP POST"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, tokenError{Error: "invalid_request", Description: "malformed form body"})
		return
	}
	f := r.PostForm
	e.mu.Lock()
	defer e.mu.Unlock()
	var userID string
	switch f.Get("grant_type") {
	case "password":
		if refusal, ok := e.checkClient(f); !ok {
			writeJSON(w, http.StatusBadRequest, refusal)
			return
		}
		if !strings.EqualFold(f.Get("username"), e.opts.Username) || f.Get("password") != e.opts.Password {
			writeJSON(w, http.StatusBadRequest, authFailure)
			return
		}
		userID = e.userID
	case "client_credentials":
		if loginHost {
			writeJSON(w, http.StatusBadRequest, notOnThisDomain)
			return
		}
		if refusal, ok := e.checkClient(f); !ok {
			writeJSON(w, http.StatusBadRequest, refusal)
			return
		}
		userID = e.userID // the connected app's "Run As" user
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		id, refusal := e.checkAssertion(f.Get("assertion"))
		if id == "" {
			writeJSON(w, http.StatusBadRequest, refusal)
			return
		}
		userID = id
	default:
		writeJSON(w, http.StatusBadRequest, tokenError{Error: "unsupported_grant_type", Description: "grant type not supported"})
		return
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	token := e.orgID[:15] + "!" + base64.RawURLEncoding.EncodeToString(raw)
	now := e.now()
	e.sessions[token] = session{userID: userID, expires: now.Add(e.opts.TokenTTL)}
	id := instance + "/id/" + e.orgID + "/" + userID
	issued := strconv.FormatInt(now.UnixMilli(), 10)
	mac := hmac.New(sha256.New, []byte(e.opts.ClientSecret))
	mac.Write([]byte(id + issued))
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token": token,
		"instance_url": instance,
		"id":           id,
		"token_type":   "Bearer",
		"issued_at":    issued,
		"signature":    base64.StdEncoding.EncodeToString(mac.Sum(nil)),
		"scope":        "api",
	})
}

// checkClient checks the consumer key and secret of a password or client credentials request.
func (e *Emulator) checkClient(f url.Values) (tokenError, bool) {
	if f.Get("client_id") != e.opts.ClientID {
		return unknownClient, false
	}
	if !hmac.Equal([]byte(f.Get("client_secret")), []byte(e.opts.ClientSecret)) {
		return badClientSecret, false
	}
	return tokenError{}, true
}

func (e *Emulator) instanceURL(r *http.Request) string {
	if e.opts.InstanceURL != "" {
		return strings.TrimSuffix(e.opts.InstanceURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// checkAssertion validates a jwt-bearer assertion as Salesforce does: RS256 signed by the key of the
// connected app's certificate, iss = its consumer key, aud = the login host of the org's kind, sub = a user's
// username, exp in the future, and the user pre-authorized for the app. It returns the user's id, or the
// refusal.
func (e *Emulator) checkAssertion(assertion string) (string, tokenError) {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return "", invalidAssertion
	}
	var header struct {
		Alg string `json:"alg"`
	}
	var claims struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud any             `json:"aud"`
		Exp json.RawMessage `json:"exp"`
	}
	if decodeSegment(parts[0], &header) != nil || decodeSegment(parts[1], &claims) != nil || header.Alg != "RS256" {
		return "", invalidAssertion
	}
	if claims.Iss != e.opts.ClientID {
		return "", unknownClient
	}
	if e.opts.JWTPublicKey == nil {
		return "", invalidAssertion // no certificate uploaded to the connected app
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", invalidAssertion
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(e.opts.JWTPublicKey, crypto.SHA256, digest[:], sig) != nil {
		return "", invalidAssertion
	}
	// go-salesforce sends exp as a string; the JWT standard says number. Accept both.
	exp, err := strconv.ParseInt(strings.Trim(string(claims.Exp), `"`), 10, 64)
	if err != nil || time.Unix(exp, 0).Before(e.now()) {
		return "", invalidAssertion
	}
	want := ProductionAudience
	if e.opts.Sandbox {
		want = SandboxAudience
	}
	if !audienceIs(claims.Aud, want) {
		return "", invalidAudience
	}
	user := e.st.schema.object("User")
	ids := e.st.findByField(user, user.field("Username"), claims.Sub)
	if len(ids) != 1 {
		return "", authFailure
	}
	if e.opts.JWTNotPreAuthorized {
		return "", consumerNotAllowed
	}
	return ids[0], tokenError{}
}

// audienceIs reports whether a JWT aud claim (a string or a list) names want.
func audienceIs(aud any, want string) bool {
	switch v := aud.(type) {
	case string:
		return strings.TrimSuffix(v, "/") == want
	case []any:
		for _, a := range v {
			if s, ok := a.(string); ok && strings.TrimSuffix(s, "/") == want {
				return true
			}
		}
	}
	return false
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// authenticate checks the bearer token; it returns the session's user. Call with e.mu held.
func (e *Emulator) authenticate(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		token, ok = strings.CutPrefix(h, "OAuth ")
	}
	if !ok {
		return "", false
	}
	s, found := e.sessions[strings.TrimSpace(token)]
	if !found || !e.now().Before(s.expires) {
		delete(e.sessions, token)
		return "", false
	}
	return s.userID, true
}

// ReadCertificateKey reads the RSA public key of a PEM certificate (or public key) file: the certificate an
// admin uploads to the connected app for the JWT bearer flow.
func ReadCertificateKey(path string) (*rsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for block, rest := pem.Decode(b); block != nil; block, rest = pem.Decode(rest) {
		var pub any
		switch block.Type {
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			pub = cert.PublicKey
		case "PUBLIC KEY":
			if pub, err = x509.ParsePKIXPublicKey(block.Bytes); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		default:
			continue
		}
		key, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an RSA key (the JWT bearer flow signs with RS256)", path)
		}
		return key, nil
	}
	return nil, fmt.Errorf("%s: no CERTIFICATE or PUBLIC KEY block in the PEM file", path)
}
