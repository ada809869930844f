package media

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// ErrNotVideo is returned by FetchVideo for a body that is not an MP4 file
// (or is announced as something else).
var ErrNotVideo = errors.New("media: not an mp4 video")

// videoTimeout bounds one video download, redirects included: a video is
// tens of megabytes where an image is a few hundred kilobytes.
const videoTimeout = 5 * time.Minute

// videoRE is the only shape of a stored video's relative name:
// "<2 hex shard>/<32 hex hash>.mp4".
var videoRE = regexp.MustCompile(`^([0-9a-f]{2})/([0-9a-f]{32})\.mp4$`)

// validVideoName reports whether rel is exactly a stored video's name.
func validVideoName(rel string) bool {
	m := videoRE.FindStringSubmatch(rel)
	return m != nil && m[1] == m[2][:2]
}

// FetchVideo downloads the MP4 file at srcURL through the same checks as
// Fetch (allowed hosts, no private addresses, few redirects) and stores it
// under a content-addressed name. The body is streamed to disk, never held
// in memory, and refused (ErrTooLarge) beyond maxBytes; it is never decoded,
// only checked to start like an MP4 (ErrNotVideo otherwise). The result has
// one variant, the file, with no pixel size, and no Key (the caller names it).
func (s *Store) FetchVideo(ctx context.Context, srcURL string, maxBytes int64) (model.Media, error) {
	m, err := s.fetchVideo(ctx, srcURL, maxBytes)
	s.downloads.WithLabelValues(outcome(err)).Inc()
	return m, err
}

func (s *Store) fetchVideo(ctx context.Context, srcURL string, maxBytes int64) (model.Media, error) {
	u, err := url.Parse(srcURL)
	if err != nil {
		return model.Media{}, fmt.Errorf("media: fetch video: %w: unparsable", ErrBadURL)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	safe := redact(u)
	if maxBytes <= 0 {
		return model.Media{}, fmt.Errorf("media: fetch video %s: %w: no bytes allowed", safe, ErrTooLarge)
	}
	if err := s.checkURL(u); err != nil {
		return model.Media{}, fmt.Errorf("media: fetch video %s: %w", safe, err)
	}
	name, n, err := s.downloadVideo(ctx, u, maxBytes)
	if err != nil {
		return model.Media{}, fmt.Errorf("media: fetch video %s: %w", safe, err)
	}
	s.log.Debug("video stored", slog.String("host", u.Host), slog.String("path", u.EscapedPath()), slog.Int64("bytes", n))
	return model.Media{Bytes: n, Variants: []model.Variant{{File: name, Bytes: n}}}, nil
}

// downloadVideo streams a 200 answer into a temp file while hashing it,
// then renames it to its content-addressed name.
func (s *Store) downloadVideo(ctx context.Context, u *url.URL, maxBytes int64) (string, int64, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, videoTimeout, ErrTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %v", ErrBadURL, redactErr(err))
	}
	req.Header.Set("Accept", "video/mp4")
	req.Header.Set("User-Agent", "feedd-media/1")
	resp, err := s.client.Do(req)
	if err != nil {
		return "", 0, s.netErr(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, &UpstreamError{Status: resp.StatusCode}
	}
	if resp.ContentLength > maxBytes {
		return "", 0, fmt.Errorf("%w: %d bytes announced, limit %d", ErrTooLarge, resp.ContentLength, maxBytes)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		switch mt {
		case "video/mp4", "application/octet-stream", "binary/octet-stream":
		default:
			return "", 0, fmt.Errorf("%w: content type %q", ErrNotVideo, mt)
		}
	}
	body := io.LimitReader(resp.Body, maxBytes+1)
	head := make([]byte, 12)
	if _, err := io.ReadFull(body, head); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return "", 0, fmt.Errorf("%w: too short", ErrNotVideo)
		}
		return "", 0, s.netErr(ctx, err)
	}
	if !isMP4(head) {
		return "", 0, fmt.Errorf("%w: no ftyp box", ErrNotVideo)
	}

	// The name is the hash of the bytes: they are spooled to a temp file
	// first (in Dir, which holds only temp files when the backend is a
	// bucket), then put into the backend from it.
	if s.opts.Dir != "" {
		if err := os.MkdirAll(s.opts.Dir, 0o755); err != nil {
			return "", 0, err
		}
	}
	f, err := os.CreateTemp(s.opts.Dir, tempPrefix+"video-*")
	if err != nil {
		return "", 0, err
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	h := sha256.New()
	w := io.MultiWriter(f, h)
	if _, err := w.Write(head); err != nil {
		return "", 0, err
	}
	n, err := io.Copy(w, body)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", 0, err // the disk, not the source
		}
		return "", 0, s.netErr(ctx, err)
	}
	n += int64(len(head))
	if n > maxBytes {
		return "", 0, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBytes)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, err
	}
	sum := hex.EncodeToString(h.Sum(nil)[:16])
	name := sum[:2] + "/" + sum + ".mp4"
	mu := s.lockName(name)
	defer mu.Unlock()
	created, err := s.backend.Put(ctx, name, f, n, contentType(name))
	if err != nil {
		return "", 0, err
	}
	if created {
		s.stored.Add(n)
	}
	return name, n, nil
}

// imageBrands are ISO-BMFF major brands of still images (HEIF, AVIF), which
// share MP4's container but do not play in a video element.
var imageBrands = map[string]bool{"heic": true, "heix": true, "mif1": true, "msf1": true, "avif": true, "avis": true}

// isMP4 reports whether head (the first 12 bytes) opens an ISO-BMFF file
// with a video brand: a "ftyp" box first, as every MP4 has.
func isMP4(head []byte) bool {
	if len(head) < 12 || string(head[4:8]) != "ftyp" {
		return false
	}
	size := binary.BigEndian.Uint32(head[:4])
	if size != 1 && size < 12 {
		return false
	}
	return !imageBrands[string(head[8:12])]
}
