package pcwebhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

// FuzzParseNotification feeds arbitrary bodies to the notification parser: refuse or parse, never panic, and a
// parsed notification always names a referral id.
func FuzzParseNotification(f *testing.F) {
	f.Add([]byte(`{"EventName":"referral-updated","ResourceUri":"https://api.partnercenter.microsoft.com/engagements/v1/referrals/61c65491-2f2c-461a-84b4-3654499bc1d9","ResourceName":"referral","AuditUri":null,"ResourceChangeUtcDate":"2018-02-17T00:05:39.5485487+00:00"}`))
	f.Add([]byte(`{"EventName":"test-created","ResourceUri":"https://x/y/","ResourceName":"test"}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, id, err := ParseNotification(body)
		if err == nil && id == "" {
			t.Fatalf("parsed %q without a referral id", body)
		}
	})
}

// FuzzVerify feeds arbitrary signature headers and bodies to the verifier: it must refuse them (no network
// fetch can succeed for a host it does not trust) and never panic.
func FuzzVerify(f *testing.F) {
	f.Add("Signature abc", "https://3psostorageacct.blob.core.windows.net/cert/x.cer", "rsa-sha256", []byte(`{}`))
	f.Add("", "", "", []byte(nil))
	f.Add("Signature ", "http://127.0.0.1:1/_emulator/cert/a.cer", "RSA-SHA256", []byte(`{"EventName":"x"}`))
	v := &Verifier{TrustedHosts: []string{"trusted.invalid"}, HTTPClient: &http.Client{Transport: refuse{}}}
	f.Fuzz(func(t *testing.T, sig, certURL, alg string, body []byte) {
		h := http.Header{}
		h.Set("Authorization", sig)
		h.Set("X-MS-Certificate-Url", certURL)
		h.Set("X-MS-Signature-Algorithm", alg)
		if err := v.Verify(context.Background(), h, body); err == nil {
			t.Fatalf("accepted an unsigned notification: %q %q %q", sig, certURL, alg)
		}
	})
}

// refuse is a transport that never reaches the network.
type refuse struct{}

func (refuse) RoundTrip(*http.Request) (*http.Response, error) { return nil, http.ErrUseLastResponse }

// BenchmarkParseNotification is the parse of one delivery, as ParseNotification does it and as encoding/json's
// Decoder did it before.
func BenchmarkParseNotification(b *testing.B) {
	body := []byte(`{"EventName":"referral-updated","ResourceUri":"https://api.partnercenter.microsoft.com/engagements/v1/referrals/61c65491-2f2c-461a-84b4-3654499bc1d9","ResourceName":"referral","AuditUri":null,"ResourceChangeUtcDate":"2018-02-17T00:05:39.5485487+00:00"}`)
	b.Run("ParseNotification", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := ParseNotification(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json Decoder (before)", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var n pc.WebhookNotification
			dec := json.NewDecoder(bytes.NewReader(body))
			if err := dec.Decode(&n); err != nil || dec.More() {
				b.Fatal(err)
			}
		}
	})
}
