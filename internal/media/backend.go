package media

import (
	"context"
	"io"
	"path"
	"time"
)

// Backend is where stored files live: a local directory (see NewLocal) or
// an S3-compatible bucket (see OpenS3). Encoding knows nothing of it and it
// knows nothing of images. Names are relative and slash-separated; the
// Store only ever passes names validName accepts.
type Backend interface {
	// Put makes name hold the size bytes read from r, complete or not at
	// all. An object that already has the name holds these bytes (the
	// name is their hash): Put keeps them but renews the object's
	// modification time, so that a sweep's grace period covers the
	// reference about to be recorded. created reports whether the object
	// did not exist before.
	Put(ctx context.Context, name string, r io.Reader, size int64, contentType string) (created bool, err error)
	// Open opens name for reading; a missing object is fs.ErrNotExist.
	Open(ctx context.Context, name string) (Object, error)
	// Delete removes name and returns the bytes it freed; a missing
	// object frees nothing and is not an error.
	Delete(ctx context.Context, name string) (freed int64, err error)
	// List calls fn for every object below the backend's root, in no
	// particular order, and stops at fn's first error.
	List(ctx context.Context, fn func(ObjectInfo) error) error
	// Close releases the backend's handles and connections.
	Close() error
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Name    string // relative, slash-separated
	Size    int64
	ModTime time.Time
}

// Object is an opened object. It seeks without reading, so a Range request
// costs only the bytes it asks for.
type Object interface {
	io.ReadSeekCloser
	Info() ObjectInfo
}

// contentTypes maps a stored name's extension to its Content-Type; names
// with any other extension are never stored (see fileRE).
var contentTypes = map[string]string{
	".jpg":  "image/jpeg",
	".avif": "image/avif",
	".webp": "image/webp",
	".mp4":  "video/mp4",
}

// contentType is the Content-Type of a stored name.
func contentType(name string) string {
	if ct, ok := contentTypes[path.Ext(name)]; ok {
		return ct
	}
	return "application/octet-stream"
}
