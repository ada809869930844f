package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Local is the Backend of a local directory: every file is written to a
// temp file beside its final name, synced and renamed into place, so a
// name is complete or absent. Reads go through an os.Root, so nothing
// outside the directory is ever opened.
type Local struct {
	dir  string
	root *os.Root
	now  func() time.Time
	// rename is os.Rename; tests inject failures.
	rename func(oldpath, newpath string) error
}

// NewLocal creates dir if needed and opens it. now renews the modification
// time of a file put again; nil means time.Now.
func NewLocal(dir string, now func() time.Time) (*Local, error) {
	if dir == "" {
		return nil, errors.New("media: no directory")
	}
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("media: create dir: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("media: open dir: %w", err)
	}
	return &Local{dir: dir, root: root, now: now, rename: os.Rename}, nil
}

// Close releases the directory handle.
func (l *Local) Close() error { return l.root.Close() }

// Put writes name through a temp file and a rename, syncing the file and
// its directory.
func (l *Local) Put(_ context.Context, name string, r io.Reader, size int64, _ string) (bool, error) {
	if ok, err := l.renew(name); ok || err != nil {
		return false, err
	}
	dir := filepath.Dir(filepath.Join(l.dir, filepath.FromSlash(name)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) {
		// A sweep removed the shard directory as it emptied; once more.
		if err = os.MkdirAll(dir, 0o755); err == nil {
			f, err = os.CreateTemp(dir, tempPrefix+"*")
		}
	}
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone already after the rename
	n, err := io.Copy(f, r)
	if err == nil && n != size {
		err = fmt.Errorf("media: put %s: %d bytes read, %d announced", name, n, size)
	}
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	return l.place(tmp, name)
}

// renew reports whether name exists and, if so, sets its modification
// time to now.
func (l *Local) renew(name string) (bool, error) {
	if _, err := l.root.Lstat(name); err != nil {
		return false, nil
	}
	t := l.now()
	if err := l.root.Chtimes(name, t, t); err != nil {
		return true, fmt.Errorf("media: renew %s: %w", name, err)
	}
	return true, nil
}

// place renames the complete temp file tmp, created in the directory, to
// name; a file of that name is kept (renewed) and tmp left to the caller.
func (l *Local) place(tmp, name string) (bool, error) {
	if ok, err := l.renew(name); ok || err != nil {
		return false, err
	}
	final := filepath.Join(l.dir, filepath.FromSlash(name))
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	if err := l.rename(tmp, final); err != nil {
		return false, err
	}
	return true, syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return nil
}

// Open opens a regular file below the directory. Anything that cannot be
// opened within it (a symlink out of it, say) is as missing as an absent
// file: the directory is not a service that can be down.
func (l *Local) Open(_ context.Context, name string) (Object, error) {
	f, err := l.root.Open(name)
	if err != nil {
		return nil, fmt.Errorf("media: open %s: %w (%v)", name, fs.ErrNotExist, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, fs.ErrNotExist
	}
	return &localObject{File: f, info: ObjectInfo{Name: name, Size: info.Size(), ModTime: info.ModTime()}}, nil
}

type localObject struct {
	*os.File
	info ObjectInfo
}

func (o *localObject) Info() ObjectInfo { return o.info }

// Delete removes a file below the directory.
func (l *Local) Delete(_ context.Context, name string) (int64, error) {
	info, err := l.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("media: remove %s: %w", name, err)
	}
	if err := l.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("media: remove %s: %w", name, err)
	}
	return info.Size(), nil
}

// List reports every regular file below the directory; symlinks are
// skipped.
func (l *Local) List(ctx context.Context, fn func(ObjectInfo) error) error {
	return l.walk(func(rel string, info fs.FileInfo) error {
		if info.IsDir() {
			return ctx.Err()
		}
		return fn(ObjectInfo{Name: rel, Size: info.Size(), ModTime: info.ModTime()})
	})
}

// tidy removes temp files older than cutoff, left by interrupted writes,
// and empty shard directories.
func (l *Local) tidy(cutoff time.Time) (removed int, bytes int64, err error) {
	var errs []error
	var dirs []string
	werr := l.walk(func(rel string, info fs.FileInfo) error {
		switch {
		case info.IsDir():
			dirs = append(dirs, rel)
		case strings.HasPrefix(filepath.Base(rel), tempPrefix) && info.ModTime().Before(cutoff):
			if err := l.root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("media: sweep %s: %w", rel, err))
				return nil
			}
			removed++
			bytes += info.Size()
		}
		return nil
	})
	// Deepest first; Remove fails harmlessly on a directory still in use.
	slices.Reverse(dirs)
	for _, d := range dirs {
		_ = l.root.Remove(d)
	}
	return removed, bytes, errors.Join(append(errs, werr)...)
}

// walk calls fn for every regular file and every directory below the
// directory (not itself), with slash-separated relative names; symlinks
// are skipped.
func (l *Local) walk(fn func(rel string, info fs.FileInfo) error) error {
	return fs.WalkDir(l.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "." {
				return err
			}
			return nil
		}
		if p == "." || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if d.IsDir() || info.Mode().IsRegular() {
			return fn(p, info)
		}
		return nil
	})
}
