package media

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Security cases for /media and Fetch not covered by files_test.go and
// fetch_test.go.

func TestHandlerRefusesSymlinkedShardDir(t *testing.T) {
	s := newStore(t, Options{})
	outside := t.TempDir()
	hash := "ab" + strings.Repeat("0", 30)
	name := hash + "-320.jpg"
	if err := os.WriteFile(filepath.Join(outside, name), []byte("outside-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A shard directory that is a symlink out of the media dir: the name
	// has the exact stored shape, so only the root confinement refuses it.
	if err := os.Symlink(outside, filepath.Join(localDir(s), "ab")); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/ab/"+name, nil))
	if rec.Code != 404 || strings.Contains(rec.Body.String(), "outside-secret") {
		t.Fatalf("GET through symlinked shard = %d %q, want 404", rec.Code, rec.Body)
	}
}

func TestHandlerRefusesEncodedTricksOnTheWire(t *testing.T) {
	s, img := stored(t, Options{}, 300, 200)
	v := img.Variants[0].File
	os.WriteFile(filepath.Join(filepath.Dir(localDir(s)), "secret.jpg"), []byte("secret"), 0o644)
	srv := httptest.NewServer(http.StripPrefix("/media", s.Handler()))
	t.Cleanup(srv.Close)
	shard, rest := v[:2], v[3:]
	for _, raw := range []string{
		"/media/%252e%252e/secret.jpg",             // double-encoded
		"/media/%2e%2e%5csecret.jpg",               // encoded backslash
		"/media/..\\secret.jpg",                    // raw backslash
		"/media/" + shard + "%2F..%2F" + rest,      // encoded traversal inside a valid name
		"/media/%2fetc%2fpasswd",                   // encoded absolute path
		"/media//etc/passwd",                       // absolute path
		"/media/" + v + "%00",                      // NUL after a valid name
		"/media/" + v + "%00.png",                  // NUL truncation trick
		"/media/" + v + ";.png",                    // parameter trick
		"/media/%c0%ae%c0%ae/secret.jpg",           // overlong UTF-8 dots
		"/media/%ef%bc%8e%ef%bc%8e/secret.jpg",     // fullwidth dots
		"/media/" + strings.Repeat("a/", 4000) + v, // overlong
		"/media/" + strings.Repeat("0", 8000) + ".jpg",
		"/media/" + shard + "/" + strings.Repeat("0", 32) + "-99999999999.jpg", // width beyond the pattern
	} {
		resp, err := http.Get(srv.URL + raw)
		if err != nil {
			t.Fatalf("GET %s: %v", raw, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 && resp.StatusCode != 400 {
			t.Errorf("GET %.80s = %d, want 404 or 400", raw, resp.StatusCode)
		}
		if bytes.Contains(b, []byte("secret")) || bytes.Contains(b, []byte("root:")) || bytes.HasPrefix(b, []byte{0xff, 0xd8}) {
			t.Errorf("GET %.80s leaked content: %q", raw, b[:min(len(b), 40)])
		}
	}
}

// inetAton resolves the way a permissive system resolver does: decimal,
// octal, hex and short dotted forms of IPv4 addresses are numbers, not names.
func inetAton(ctx context.Context, host string) ([]netip.Addr, error) {
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return nil, fmt.Errorf("no such host %q", host)
	}
	var nums []uint64
	for _, p := range parts {
		n, err := strconv.ParseUint(p, 0, 32)
		if err != nil {
			return nil, fmt.Errorf("no such host %q", host)
		}
		nums = append(nums, n)
	}
	v := nums[len(nums)-1]
	for i, n := range nums[:len(nums)-1] {
		v |= n << (24 - 8*i)
	}
	return []netip.Addr{netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})}, nil
}

func TestFetchRefusesInternalAddressForms(t *testing.T) {
	src := newSource(t, true, serveBytes(jpegBytes(t, 50, 50)))
	port := strconv.Itoa(int(addrOf(t, src.Server).Port()))
	for _, host := range []string{
		"127.0.0.1", "[::1]", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.100.100.200",
		"[::ffff:127.0.0.1]", "[::ffff:169.254.169.254]", "0.0.0.0", "[::]", "[fd00:ec2::254]", "[fe80::1]",
		// Numeric spellings a permissive resolver turns into loopback.
		"2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "0x7f000001", "017700000001",
	} {
		t.Run(host, func(t *testing.T) {
			hosts, err := ParseHosts(host + ":" + port)
			if err != nil {
				t.Skipf("not expressible in the allow-list, so refused earlier: %v", err)
			}
			s := newStore(t, Options{Hosts: hosts, Resolver: inetAton, Timeout: 5 * time.Second})
			trustTLS(s, src.Server)
			before := src.hits.Load()
			_, err = s.Fetch(context.Background(), "https://"+host+":"+port+"/a.jpg"+signed)
			if !errors.Is(err, ErrPrivateAddress) {
				t.Errorf("err = %v, want ErrPrivateAddress", err)
			}
			if n := src.hits.Load() - before; n != 0 {
				t.Errorf("source contacted %d times", n)
			}
			if files := listFiles(t, localDir(s)); len(files) != 0 {
				t.Errorf("files written: %v", files)
			}
		})
	}
}

func TestFetchRefusesURLTricks(t *testing.T) {
	src := newSource(t, true, serveBytes(jpegBytes(t, 50, 50)))
	hostport := addrOf(t, src.Server).String()
	tests := []struct {
		url  string
		want []error
	}{
		{"https://cdn.cdninstagram.com@" + hostport + "/a.jpg", []error{ErrBadURL}},
		{"https://cdn.cdninstagram.com:443@" + hostport + "/a.jpg", []error{ErrBadURL}},
		{"https://cdn.cdninstagram.com%40" + hostport + "/a.jpg", []error{ErrBadURL, ErrHostNotAllowed}},
		{"https://" + hostport + "#@cdn.cdninstagram.com/a.jpg", []error{ErrHostNotAllowed}},
		{"https://" + hostport + "\\@cdn.cdninstagram.com/a.jpg", []error{ErrBadURL, ErrHostNotAllowed}},
		{"https://" + hostport + "?@cdn.cdninstagram.com/a.jpg", []error{ErrHostNotAllowed}},
		{"https://cdn.cdninstagram.com." + hostport + "/a.jpg", []error{ErrBadURL, ErrHostNotAllowed}},
		{"//cdn.cdninstagram.com/a.jpg", []error{ErrBadURL}},
		{"http://cdn.cdninstagram.com/a.jpg", []error{ErrBadURL}},
		{"ftp://cdn.cdninstagram.com/a.jpg", []error{ErrBadURL}},
		{"gopher://cdn.cdninstagram.com:70/_GET", []error{ErrBadURL}},
		{"file://cdn.cdninstagram.com/etc/passwd", []error{ErrBadURL}},
		{"data:image/png;base64,iVBORw0KGgo=", []error{ErrBadURL}},
		{"javascript:alert(1)", []error{ErrBadURL}},
		{"ws://cdn.cdninstagram.com/a.jpg", []error{ErrBadURL}},
		{"/a.jpg", []error{ErrBadURL}},
		{"", []error{ErrBadURL}},
		{"https://cdn.cdninstagram.com\x00.evil.test/a.jpg", []error{ErrBadURL, ErrHostNotAllowed}},
		{"https://cdn.cdninstagram.com\n/a.jpg", []error{ErrBadURL}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			s := newStore(t, Options{Hosts: mustHosts(t, "*.cdninstagram.com"), Resolver: inetAton, Timeout: 5 * time.Second})
			trustTLS(s, src.Server)
			_, err := s.Fetch(context.Background(), tt.url+signed)
			ok := false
			for _, w := range tt.want {
				ok = ok || errors.Is(err, w)
			}
			if !ok {
				t.Errorf("err = %v, want one of %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "SIGNATURE_SECRET") {
				t.Errorf("error leaks the signed query: %v", err)
			}
		})
	}
	if n := src.hits.Load(); n != 0 {
		t.Errorf("source contacted %d times", n)
	}
}

func TestFetchRedirectToInternalForms(t *testing.T) {
	target := newSource(t, true, serveBytes(jpegBytes(t, 50, 50)))
	port := strconv.Itoa(int(addrOf(t, target.Server).Port()))
	var redirectTo string
	hop := newSource(t, true, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, redirectTo, http.StatusFound)
	})
	hopHost := hostOf(t, hop.Server).String()
	for _, tt := range []struct {
		to    string
		hosts string
		want  error
	}{
		{"https://[::ffff:127.0.0.1]:" + port + "/a.jpg", "[::ffff:127.0.0.1]:" + port, ErrPrivateAddress},
		{"https://2130706433:" + port + "/a.jpg", "2130706433:" + port, ErrPrivateAddress},
		{"https://169.254.169.254/latest/meta-data/", "169.254.169.254", ErrPrivateAddress},
		{"https://169.254.169.254/latest/meta-data/", "", ErrHostNotAllowed},
		{"https://user:pass@" + hopHost + "/a.jpg", "", ErrBadURL},
		{"file:///etc/passwd", "", ErrBadURL},
		{"gopher://127.0.0.1:6379/_FLUSHALL", "", ErrBadURL},
	} {
		t.Run(tt.to, func(t *testing.T) {
			redirectTo = tt.to
			hosts := hopHost
			if tt.hosts != "" {
				hosts += "," + tt.hosts
			}
			s := newStore(t, Options{Hosts: mustHosts(t, hosts), Resolver: inetAton, Timeout: 5 * time.Second})
			trustTLS(s, hop.Server)
			s.dial.trusted = map[netip.AddrPort]bool{addrOf(t, hop.Server): true}
			_, err := s.Fetch(context.Background(), hop.URL+"/a.jpg"+signed)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if files := listFiles(t, localDir(s)); len(files) != 0 {
				t.Errorf("files written: %v", files)
			}
		})
	}
	if n := target.hits.Load(); n != 0 {
		t.Errorf("internal target contacted %d times", n)
	}
}

func TestFetchRefusesBombs(t *testing.T) {
	var zeros bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zeros, gzip.BestCompression)
	zw.Write(make([]byte, 64<<20))
	zw.Close()
	tests := []struct {
		name string
		h    http.HandlerFunc
		want error
	}{
		// 64 MiB of zeros in ~64 KiB: the limit applies to what is read
		// after the transport's transparent decompression.
		{"gzip content-encoding bomb", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Type", "image/jpeg")
			w.Write(zeros.Bytes())
		}, ErrTooLarge},
		{"png declaring 100000x100000", serveBytes(pngBomb(100000, 100000)), ErrBadImage},
		{"jpeg declaring 65000x65000", serveBytes(jpegBomb(t, 65000, 65000)), ErrBadImage},
		{"png 1x40000 strip", serveBytes(pngBomb(1, 40000)), ErrBadImage},
		{"endless body", func(w http.ResponseWriter, r *http.Request) {
			chunk := make([]byte, 32<<10)
			for range 200 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newSource(t, false, tt.h)
			s := newStore(t, Options{Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true, MaxBytes: 1 << 20})
			var before, after runtimeMem
			before.read()
			_, err := s.Fetch(context.Background(), src.URL+"/a.jpg")
			after.read()
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if d := after.total - before.total; d > 16<<20 {
				t.Errorf("allocated %d MiB refusing it", d>>20)
			}
			if files := listFiles(t, localDir(s)); len(files) != 0 {
				t.Errorf("files written: %v", files)
			}
		})
	}
}
