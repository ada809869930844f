package connection

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/sandbox"
)

func signed(secret string, payload map[string]any) string {
	b, _ := json.Marshal(payload)
	return sandbox.SignRequest(secret, b)
}

func TestParseSignedRequest(t *testing.T) {
	const secret = "s3cret"
	valid := signed(secret, map[string]any{"algorithm": "HMAC-SHA256", "issued_at": 1700000000, "user_id": "17841400000000001"})
	sig, payload, _ := strings.Cut(valid, ".")
	padded := func(s string) string {
		for len(s)%4 != 0 {
			s += "="
		}
		return s
	}
	tests := []struct {
		name, sr string
		want     error
		user     string
	}{
		{"valid", valid, nil, "17841400000000001"},
		{"padded", padded(sig) + "." + padded(payload), nil, "17841400000000001"},
		{"numeric user id", signed(secret, map[string]any{"algorithm": "HMAC-SHA256", "user_id": json.Number("27640875392278831")}), nil, "27640875392278831"},
		{"wrong key", signed("other", map[string]any{"algorithm": "HMAC-SHA256", "user_id": "1"}), ErrSignedRequestSignature, ""},
		{"tampered payload", sig + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"algorithm":"HMAC-SHA256","user_id":"2"}`)), ErrSignedRequestSignature, ""},
		{"wrong algorithm", signed(secret, map[string]any{"algorithm": "HMAC-SHA1", "user_id": "1"}), ErrSignedRequestAlgorithm, ""},
		{"no algorithm", signed(secret, map[string]any{"user_id": "1"}), ErrSignedRequestAlgorithm, ""},
		{"no dot", sig + payload, ErrSignedRequestMalformed, ""},
		{"three parts", valid + ".x", ErrSignedRequestMalformed, ""},
		{"bad base64", "!!!." + payload, ErrSignedRequestMalformed, ""},
		{"short signature", "abcd." + payload, ErrSignedRequestMalformed, ""},
		{"user id not digits", signed(secret, map[string]any{"algorithm": "HMAC-SHA256", "user_id": "1 OR 1=1"}), ErrSignedRequestMalformed, ""},
		{"no user id", signed(secret, map[string]any{"algorithm": "HMAC-SHA256"}), ErrSignedRequestMalformed, ""},
		{"payload not json", sandbox.SignRequest(secret, []byte("hello")), ErrSignedRequestMalformed, ""},
		{"oversized", strings.Repeat("a", MaxSignedRequest+1), ErrSignedRequestMalformed, ""},
		{"empty", "", ErrSignedRequestMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSignedRequest(tt.sr, secret)
			if err != tt.want {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if got.UserID != tt.user {
				t.Fatalf("user = %q, want %q", got.UserID, tt.user)
			}
		})
	}
	if _, err := ParseSignedRequest(valid, ""); err != ErrNoAppSecret {
		t.Fatalf("no secret: %v", err)
	}
}

func FuzzParseSignedRequest(f *testing.F) {
	f.Add(signed("k", map[string]any{"algorithm": "HMAC-SHA256", "user_id": "1"}))
	f.Add("a.b")
	f.Fuzz(func(t *testing.T, sr string) {
		got, err := ParseSignedRequest(sr, "k")
		if err == nil && strings.Trim(got.UserID, "0123456789") != "" {
			t.Fatalf("accepted user id %q", got.UserID)
		}
	})
}
