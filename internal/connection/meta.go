package connection

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// Errors from ParseSignedRequest; all mean "refuse, change nothing".
var (
	ErrSignedRequestMalformed = errors.New("connection: signed_request malformed")
	ErrSignedRequestSignature = errors.New("connection: signed_request signature does not match")
	ErrSignedRequestAlgorithm = errors.New("connection: signed_request algorithm is not HMAC-SHA256")
	ErrNoAppSecret            = errors.New("connection: FEEDD_INSTAGRAM_APP_SECRET is not set; cannot verify Meta's callbacks")
	// ErrSignedRequestStale: issued_at is missing, more than MaxSignedRequestAge old, or in the future.
	ErrSignedRequestStale = errors.New("connection: signed_request issued_at is missing, too old or in the future")
)

// MaxSignedRequest bounds a signed_request; Meta's are a few hundred bytes.
const MaxSignedRequest = 4096

// Freshness of a signed_request: a replayed old callback must not delete
// anything. Meta sends its callbacks at once; a little clock skew between
// Meta and this server is tolerated.
const (
	MaxSignedRequestAge  = 24 * time.Hour
	maxSignedRequestSkew = 5 * time.Minute
)

// checkIssued refuses a request whose issued_at is missing, more than
// MaxSignedRequestAge before now, or more than the skew after it.
func checkIssued(sr SignedRequest, now time.Time) error {
	if sr.IssuedAt <= 0 {
		return ErrSignedRequestStale
	}
	at := time.Unix(sr.IssuedAt, 0)
	if now.Sub(at) > MaxSignedRequestAge || at.Sub(now) > maxSignedRequestSkew {
		return ErrSignedRequestStale
	}
	return nil
}

// SignedRequest is the verified payload of one of Meta's callbacks.
type SignedRequest struct {
	Algorithm string
	IssuedAt  int64
	UserID    string // digits
}

// ParseSignedRequest verifies base64url(sig).base64url(payload) with
// HMAC-SHA256 over the payload segment as received, keyed with the app
// secret, in constant time, and requires algorithm HMAC-SHA256.
func ParseSignedRequest(sr, appSecret string) (SignedRequest, error) {
	if appSecret == "" {
		return SignedRequest{}, ErrNoAppSecret
	}
	if sr == "" || len(sr) > MaxSignedRequest {
		return SignedRequest{}, ErrSignedRequestMalformed
	}
	sigPart, payloadPart, ok := strings.Cut(sr, ".")
	if !ok || sigPart == "" || payloadPart == "" || strings.Contains(payloadPart, ".") {
		return SignedRequest{}, ErrSignedRequestMalformed
	}
	sig, err := decodeB64URL(sigPart)
	if err != nil || len(sig) != sha256.Size {
		return SignedRequest{}, ErrSignedRequestMalformed
	}
	// The signature covers the segment as sent; a sender that pads may have
	// signed the unpadded form, so that is accepted too.
	ok = hmac.Equal(sig, sign(appSecret, payloadPart))
	if trimmed := strings.TrimRight(payloadPart, "="); trimmed != payloadPart {
		ok = hmac.Equal(sig, sign(appSecret, trimmed)) || ok
	}
	if !ok {
		return SignedRequest{}, ErrSignedRequestSignature
	}
	payload, err := decodeB64URL(payloadPart)
	if err != nil {
		return SignedRequest{}, ErrSignedRequestMalformed
	}
	var p struct {
		Algorithm string      `json:"algorithm"`
		IssuedAt  json.Number `json:"issued_at"`
		UserID    json.Number `json:"user_id"` // a string of digits, or a bare number
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return SignedRequest{}, ErrSignedRequestMalformed
	}
	if _, err := dec.Token(); err != io.EOF {
		return SignedRequest{}, ErrSignedRequestMalformed
	}
	if !strings.EqualFold(p.Algorithm, "HMAC-SHA256") {
		return SignedRequest{}, ErrSignedRequestAlgorithm
	}
	uid := string(p.UserID)
	if uid == "" || len(uid) > 32 || strings.Trim(uid, "0123456789") != "" {
		return SignedRequest{}, ErrSignedRequestMalformed
	}
	out := SignedRequest{Algorithm: "HMAC-SHA256", UserID: uid}
	if p.IssuedAt != "" {
		if n, err := p.IssuedAt.Int64(); err == nil {
			out.IssuedAt = n
		}
	}
	return out, nil
}

func sign(secret, segment string) []byte {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(segment))
	return mac.Sum(nil)
}

// decodeB64URL accepts base64url with or without padding.
func decodeB64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.Strict().DecodeString(strings.TrimRight(s, "="))
}

// confirmationCode is 24 alphanumeric characters (~142 bits).
func (s *Service) confirmationCode() (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	const n = 24
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		if _, err := io.ReadFull(s.rand, buf[:]); err != nil {
			return "", fmt.Errorf("connection: random code: %w", err)
		}
		for _, b := range buf {
			if b < 248 && len(out) < n { // 248 = 4×62: no modulo bias
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}

// ValidConfirmationCode reports whether code could be one feedd issued.
func ValidConfirmationCode(code string) bool {
	if len(code) != 24 {
		return false
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// MetaCallback handles a verified deauthorize or data-deletion request
// (kind is model.KindDeauthorize or model.KindDelete): every feed bound to
// the user loses its token, account data, posts and stored media (the feed
// itself stays, not_connected), and the request is recorded. An unknown
// user still gets a recorded request.
func (s *Service) MetaCallback(ctx context.Context, kind, signedRequest string) (model.DeletionRequest, error) {
	sr, err := ParseSignedRequest(signedRequest, s.appSecret)
	if err != nil {
		return model.DeletionRequest{}, err
	}
	if err := checkIssued(sr, s.now()); err != nil {
		return model.DeletionRequest{}, err
	}
	code, err := s.confirmationCode()
	if err != nil {
		return model.DeletionRequest{}, err
	}
	req := model.DeletionRequest{Code: code, Kind: kind, UserID: sr.UserID, RequestedAt: s.now()}
	if err := s.store.CreateDeletionRequest(ctx, req); err != nil {
		return model.DeletionRequest{}, fmt.Errorf("connection: record deletion request: %w", err)
	}
	feeds, err := s.store.FeedsForInstagramUser(ctx, sr.UserID)
	if err != nil {
		return model.DeletionRequest{}, fmt.Errorf("connection: feeds for user: %w", err)
	}
	by := byMetaDelete
	if kind == model.KindDeauthorize {
		by = byMetaDeauthorize
	}
	for _, f := range feeds {
		if err := s.disconnectFeed(ctx, f.ID, by); err != nil && !errors.Is(err, model.ErrNotFound) {
			return model.DeletionRequest{}, fmt.Errorf("connection: disconnect feed: %w", err)
		}
	}
	affected := len(feeds)
	// The user may also be a further account of other feeds: those
	// accounts go, with their posts; the feeds stay.
	if ss, err := s.sourceStore(); err == nil {
		srcs, err := ss.SourcesForInstagramUser(ctx, sr.UserID)
		if err != nil {
			return model.DeletionRequest{}, fmt.Errorf("connection: sources for user: %w", err)
		}
		for _, src := range srcs {
			err := s.removeSource(ctx, src.FeedID, src.ID, by)
			if err != nil && !errors.Is(err, model.ErrNotFound) && !errors.Is(err, model.ErrSourceNotFound) {
				return model.DeletionRequest{}, fmt.Errorf("connection: remove source: %w", err)
			}
			if err == nil {
				affected++
			}
		}
	}
	req.CompletedAt, req.FeedsAffected = s.now(), affected
	if err := s.store.CompleteDeletionRequest(ctx, code, req.CompletedAt, affected); err != nil {
		return model.DeletionRequest{}, fmt.Errorf("connection: complete deletion request: %w", err)
	}
	s.log.Info("meta callback handled", slog.String("kind", kind), slog.Int("feeds", affected))
	return req, nil
}

// DeletionStatusURL is the status page of a deletion request.
func (s *Service) DeletionStatusURL(code string) string {
	return s.publicURL + "/auth/instagram/deletion?code=" + code
}

// Deletion returns a recorded deletion request (model.ErrNotFound when unknown).
func (s *Service) Deletion(ctx context.Context, code string) (model.DeletionRequest, error) {
	if !ValidConfirmationCode(code) {
		return model.DeletionRequest{}, model.ErrNotFound
	}
	return s.store.DeletionRequest(ctx, code)
}
