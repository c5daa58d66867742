package sfemu

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

func unescape(s string) (string, error) { return url.PathUnescape(s) }

type tokenError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

var authFailure = tokenError{Error: "invalid_grant", Description: "authentication failure"}

// serveToken implements POST /services/oauth2/token for the password, client_credentials and jwt-bearer
// grants. It answers on any host, because go-salesforce refreshes against the instance URL.
func (e *Emulator) serveToken(w http.ResponseWriter, r *http.Request) {
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
		if f.Get("client_id") != e.opts.ClientID || f.Get("client_secret") != e.opts.ClientSecret {
			writeJSON(w, http.StatusBadRequest, tokenError{Error: "invalid_client_id", Description: "client identifier invalid"})
			return
		}
		if !strings.EqualFold(f.Get("username"), e.opts.Username) || f.Get("password") != e.opts.Password {
			writeJSON(w, http.StatusBadRequest, authFailure)
			return
		}
		userID = e.userID
	case "client_credentials":
		if f.Get("client_id") != e.opts.ClientID || f.Get("client_secret") != e.opts.ClientSecret {
			writeJSON(w, http.StatusBadRequest, authFailure)
			return
		}
		userID = e.userID
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		id, ok := e.checkAssertion(f.Get("assertion"))
		if !ok {
			writeJSON(w, http.StatusBadRequest, authFailure)
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
	instance := e.instanceURL(r)
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

// checkAssertion validates a jwt-bearer assertion: RS256, iss = client id, sub = a user's username, exp in
// the future, and the signature when a public key is configured. It returns the user's id.
func (e *Emulator) checkAssertion(assertion string) (string, bool) {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return "", false
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
		return "", false
	}
	if e.opts.JWTPublicKey != nil {
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil {
			return "", false
		}
		digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if rsa.VerifyPKCS1v15(e.opts.JWTPublicKey, crypto.SHA256, digest[:], sig) != nil {
			return "", false
		}
	}
	// go-salesforce sends exp as a string; the JWT standard says number. Accept both.
	exp, err := strconv.ParseInt(strings.Trim(string(claims.Exp), `"`), 10, 64)
	if err != nil || time.Unix(exp, 0).Before(e.now()) {
		return "", false
	}
	if claims.Iss != e.opts.ClientID {
		return "", false
	}
	user := e.st.schema.object("User")
	f := user.field("Username")
	ids := e.st.findByField(user, f, claims.Sub)
	if len(ids) != 1 {
		return "", false
	}
	return ids[0], true
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
