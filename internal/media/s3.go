package media

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// ErrStorage is returned (wrapped) when the object storage refuses or
// cannot be reached.
var ErrStorage = errors.New("media: object storage")

// S3Options locate a bucket, and a prefix in it, on S3-compatible storage.
type S3Options struct {
	// Endpoint is host[:port] (s3.amazonaws.com for AWS).
	Endpoint string
	// Insecure talks plain HTTP to the endpoint (a local test server).
	Insecure bool
	// Region is the bucket's region; "" lets the client ask the server.
	Region string
	Bucket string
	// Prefix is prepended to every name with a "/"; "" is the whole bucket.
	Prefix string
	// Credentials; SessionToken only with temporary credentials.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// ProbeTimeout bounds the start-up check; 0 means 30 seconds.
	ProbeTimeout time.Duration
}

// S3 is the Backend of an S3-compatible bucket. A PUT is atomic, so an
// object is complete or absent; objects are streamed, never held whole.
type S3 struct {
	core   minio.Core
	bucket string
	prefix string // "" or ending in "/"
	where  string // bucket and endpoint, for errors
	tr     *http.Transport
}

// OpenS3 connects to the bucket and checks that it is reachable and
// writable by putting and deleting a probe object under the prefix.
// Errors name the bucket, the endpoint and what was refused, never a
// credential.
func OpenS3(ctx context.Context, o S3Options) (*S3, error) {
	if o.Endpoint == "" || o.Bucket == "" {
		return nil, fmt.Errorf("%w: endpoint and bucket are required", ErrStorage)
	}
	tr := &http.Transport{
		// Nothing but the configuration says where feedd connects.
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   16,
		ResponseHeaderTimeout: time.Minute,
		IdleConnTimeout:       time.Minute,
		TLSHandshakeTimeout:   10 * time.Second,
		// Objects are served as stored, never transparently decompressed.
		DisableCompression: true,
	}
	c, err := minio.New(o.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(o.AccessKeyID, o.SecretAccessKey, o.SessionToken),
		Secure:     !o.Insecure,
		Region:     o.Region,
		Transport:  tr,
		MaxRetries: 3,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: endpoint %q: %v", ErrStorage, o.Endpoint, err)
	}
	s := &S3{core: minio.Core{Client: c}, bucket: o.Bucket, tr: tr,
		where: fmt.Sprintf("bucket %q at %s", o.Bucket, o.Endpoint)}
	if p := strings.Trim(o.Prefix, "/"); p != "" {
		s.prefix = p + "/"
	}
	timeout := o.ProbeTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.probe(pctx); err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	return s, nil
}

// probe puts and deletes an object whose name no stored file can have.
func (s *S3) probe(ctx context.Context) error {
	var b [8]byte
	rand.Read(b[:])
	key := s.prefix + ".feedd-probe-" + hex.EncodeToString(b[:])
	body := "feedd start-up check\n"
	if _, err := s.core.Client.PutObject(ctx, s.bucket, key, strings.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{ContentType: "text/plain", DisableMultipart: true}); err != nil {
		return s.fail("cannot write a probe object", err)
	}
	if err := s.core.Client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return s.fail("cannot delete the probe object "+key, err)
	}
	return nil
}

// fail describes err for an operator: the server's error code with what it
// usually means, or the network failure without the request URL.
func (s *S3) fail(what string, err error) error {
	er := minio.ToErrorResponse(err)
	var why string
	switch er.Code {
	case "":
		why = redactErr(err).Error()
	case "InvalidAccessKeyId":
		why = "the access key id is unknown (AWS_ACCESS_KEY_ID): InvalidAccessKeyId"
	case "SignatureDoesNotMatch":
		why = "the secret access key does not match (AWS_SECRET_ACCESS_KEY): SignatureDoesNotMatch"
	case "AccessDenied":
		why = "access denied: the credentials must allow listing the bucket and putting, reading and deleting objects under the prefix: AccessDenied"
	case "NoSuchBucket":
		why = "no such bucket: NoSuchBucket"
	case "ExpiredToken", "InvalidToken":
		why = "the session token is expired or invalid (AWS_SESSION_TOKEN): " + er.Code
	default:
		why = fmt.Sprintf("%s (HTTP %d)", er.Code, er.StatusCode)
	}
	return fmt.Errorf("%w: %s: %s: %s", ErrStorage, s.where, what, why)
}

func (s *S3) key(name string) string { return s.prefix + name }

func notFound(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == "NoSuchKey" || code == "NotFound"
}

// Close releases idle connections.
func (s *S3) Close() error {
	s.tr.CloseIdleConnections()
	return nil
}

// Put uploads name in one PUT. An object that exists is uploaded again
// rather than copied onto itself: that renews its modification time on
// every S3-compatible server, and content-addressed objects rarely repeat.
func (s *S3) Put(ctx context.Context, name string, r io.Reader, size int64, ctype string) (bool, error) {
	_, err := s.core.Client.StatObject(ctx, s.bucket, s.key(name), minio.StatObjectOptions{})
	if err != nil && !notFound(err) {
		return false, s.fail("put "+name, err)
	}
	existed := err == nil
	_, err = s.core.Client.PutObject(ctx, s.bucket, s.key(name), r, size, minio.PutObjectOptions{
		ContentType: ctype,
		// For a public bucket or a CDN serving the objects directly.
		CacheControl:     "public, max-age=31536000, immutable",
		DisableMultipart: true,
	})
	if err != nil {
		return false, s.fail("put "+name, err)
	}
	return !existed, nil
}

// Open reads the object's metadata; its bytes are requested on the first
// Read, from the offset a Seek chose.
func (s *S3) Open(ctx context.Context, name string) (Object, error) {
	oi, err := s.core.Client.StatObject(ctx, s.bucket, s.key(name), minio.StatObjectOptions{})
	if notFound(err) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, s.fail("open "+name, err)
	}
	return &s3Object{ctx: ctx, s: s, key: s.key(name), etag: oi.ETag,
		info: ObjectInfo{Name: name, Size: oi.Size, ModTime: oi.LastModified}}, nil
}

// s3Object reads an object lazily: a Seek only moves the offset, and the
// next Read starts a ranged GET from there.
type s3Object struct {
	ctx  context.Context
	s    *S3
	key  string
	etag string
	info ObjectInfo
	off  int64
	body io.ReadCloser
}

func (o *s3Object) Info() ObjectInfo { return o.info }

func (o *s3Object) Read(p []byte) (int, error) {
	if o.off >= o.info.Size {
		return 0, io.EOF
	}
	if o.body == nil {
		opts := minio.GetObjectOptions{}
		// The same object the metadata described, even if it was put again.
		if err := opts.SetMatchETag(o.etag); err != nil {
			return 0, err
		}
		if o.off > 0 {
			if err := opts.SetRange(o.off, 0); err != nil {
				return 0, err
			}
		}
		body, _, _, err := o.s.core.GetObject(o.ctx, o.s.bucket, o.key, opts)
		if err != nil {
			return 0, o.s.fail("read "+o.info.Name, err)
		}
		o.body = body
	}
	n, err := o.body.Read(p)
	o.off += int64(n)
	return n, err
}

func (o *s3Object) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += o.off
	case io.SeekEnd:
		offset += o.info.Size
	default:
		return 0, errors.New("media: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("media: negative offset")
	}
	if offset != o.off && o.body != nil {
		o.body.Close()
		o.body = nil
	}
	o.off = offset
	return offset, nil
}

func (o *s3Object) Close() error {
	if o.body != nil {
		return o.body.Close()
	}
	return nil
}

// Delete removes the object; S3 answers a missing one with success too.
func (s *S3) Delete(ctx context.Context, name string) (int64, error) {
	oi, err := s.core.Client.StatObject(ctx, s.bucket, s.key(name), minio.StatObjectOptions{})
	if notFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, s.fail("remove "+name, err)
	}
	if err := s.core.Client.RemoveObject(ctx, s.bucket, s.key(name), minio.RemoveObjectOptions{}); err != nil {
		return 0, s.fail("remove "+name, err)
	}
	return oi.Size, nil
}

// List lists the objects under the prefix only, page by page.
func (s *S3) List(ctx context.Context, fn func(ObjectInfo) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when fn fails
	for oi := range s.core.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, Recursive: true}) {
		if oi.Err != nil {
			return s.fail("list", oi.Err)
		}
		name, ok := strings.CutPrefix(oi.Key, s.prefix)
		if !ok || name == "" {
			continue
		}
		if err := fn(ObjectInfo{Name: name, Size: oi.Size, ModTime: oi.LastModified}); err != nil {
			return err
		}
	}
	return ctx.Err()
}
