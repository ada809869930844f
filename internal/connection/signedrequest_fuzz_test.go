package connection

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// FuzzSignedRequestVerify checks ParseSignedRequest against an independent
// statement of what it may accept: it never panics; it accepts only input
// whose signature is HMAC-SHA256 under the secret of the payload segment
// (as sent, or without its padding); a payload feedd signs itself with the
// secret is accepted exactly when its content is valid, and the accepted
// user id is the one in the payload; the same input under another secret
// is refused.
func FuzzSignedRequestVerify(f *testing.F) {
	f.Add("", "app-secret", []byte(`{"algorithm":"HMAC-SHA256","issued_at":1700000000,"user_id":"17841400000000001"}`))
	f.Add("", "k", []byte(`{"algorithm":"hmac-sha256","user_id":12345}`))
	f.Add("", "k", []byte(`{"algorithm":"HMAC-SHA1","user_id":"1"}`))
	f.Add("", "k", []byte(`{"algorithm":"HMAC-SHA256","user_id":"1"} {}`))
	f.Add("", "k", []byte(`{"algorithm":"HMAC-SHA256","user_id":"1e3"}`))
	f.Add("a.b", "k", []byte(nil))
	f.Add("....", "k", []byte(nil))
	f.Add(signed("k", map[string]any{"algorithm": "HMAC-SHA256", "user_id": "1"})+"==", "k", []byte(nil))
	f.Fuzz(func(t *testing.T, sr, secret string, payload []byte) {
		if secret == "" {
			secret = "k"
		}
		// Arbitrary input: whatever is accepted carries a valid signature.
		if got, err := ParseSignedRequest(sr, secret); err == nil {
			checkAccepted(t, sr, secret, got)
		}
		// A request signed here with the secret.
		p := base64.RawURLEncoding.EncodeToString(payload)
		mine := b64(mac(secret, p)) + "." + p
		got, err := ParseSignedRequest(mine, secret)
		want, valid := expectedPayload(payload)
		switch {
		case len(mine) > MaxSignedRequest:
			if err == nil {
				t.Fatalf("accepted %d bytes, more than MaxSignedRequest", len(mine))
			}
		case valid && err != nil:
			t.Fatalf("refused a correctly signed valid payload %q: %v", payload, err)
		case !valid && err == nil:
			t.Fatalf("accepted invalid payload %q as %+v", payload, got)
		case valid && got.UserID != want:
			t.Fatalf("user id %q, want %q (payload %q)", got.UserID, want, payload)
		}
		if err == nil {
			checkAccepted(t, mine, secret, got)
			// Accepted payload round-trips: signing what was accepted again
			// yields a request that parses to the same result.
			again, _ := json.Marshal(map[string]any{"algorithm": got.Algorithm, "issued_at": got.IssuedAt, "user_id": got.UserID})
			if got2, err := ParseSignedRequest(signed(secret, map[string]any{"algorithm": got.Algorithm, "issued_at": got.IssuedAt, "user_id": got.UserID}), secret); err != nil || got2 != got {
				t.Fatalf("re-signed %s: %+v, %v; want %+v", again, got2, err, got)
			}
		}
		// The same request under any other secret is refused.
		if _, err := ParseSignedRequest(mine, secret+"x"); err == nil {
			t.Fatalf("accepted under a different secret")
		}
		// Flipping one bit of the signature is refused.
		sig := mac(secret, p)
		sig[len(p)%len(sig)] ^= 1
		if _, err := ParseSignedRequest(b64(sig)+"."+p, secret); err == nil {
			t.Fatalf("accepted a tampered signature")
		}
	})
}

func mac(secret, segment string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(segment))
	return m.Sum(nil)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// checkAccepted verifies, independently of the parser, that an accepted
// request is signed with secret and names a digits-only user.
func checkAccepted(t *testing.T, sr, secret string, got SignedRequest) {
	t.Helper()
	sigPart, payloadPart, ok := strings.Cut(sr, ".")
	if !ok {
		t.Fatalf("accepted %q without a dot", sr)
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(sigPart, "="))
	if err != nil {
		t.Fatalf("accepted undecodable signature %q", sigPart)
	}
	if !hmac.Equal(sig, mac(secret, payloadPart)) && !hmac.Equal(sig, mac(secret, strings.TrimRight(payloadPart, "="))) {
		t.Fatalf("accepted %q whose signature does not verify", sr)
	}
	if got.UserID == "" || strings.Trim(got.UserID, "0123456789") != "" || got.Algorithm != "HMAC-SHA256" {
		t.Fatalf("accepted %+v", got)
	}
}

// expectedPayload is the spec: one JSON object, algorithm HMAC-SHA256 in
// any case, user_id a string of 1-32 digits or a bare number spelled so.
func expectedPayload(b []byte) (string, bool) {
	var p struct {
		Algorithm string          `json:"algorithm"`
		IssuedAt  json.RawMessage `json:"issued_at"`
		UserID    json.RawMessage `json:"user_id"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&p); err != nil || dec.More() {
		return "", false
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", false
	}
	if !strings.EqualFold(p.Algorithm, "HMAC-SHA256") {
		return "", false
	}
	// A quoted id must still be spelled as a JSON number ("0123" is not).
	var n json.Number
	if json.Unmarshal(p.UserID, &n) != nil {
		return "", false
	}
	uid := string(n)
	if uid == "" || len(uid) > 32 || strings.Trim(uid, "0123456789") != "" {
		return "", false
	}
	if len(p.IssuedAt) > 0 && string(p.IssuedAt) != "null" {
		if json.Unmarshal(p.IssuedAt, &n) != nil {
			return "", false
		}
	}
	return uid, true
}
