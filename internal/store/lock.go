package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrLocked reports that another process holds the instance lock of a
// SQLite database.
var ErrLocked = errors.New("store: another feedd is running on this data dir; the embedded SQLite database serves one instance (run several on PostgreSQL: FEEDD_DATABASE_URL)")

// instanceLock is an advisory lock on a file beside the SQLite database,
// held for the life of the process that serves it. The kernel drops it when
// the process dies, so a crash never leaves a stale lock behind.
type instanceLock struct {
	f *os.File
}

// lockInstance takes the lock at path without waiting, and writes this
// process's id into the file for the message a second process prints.
func lockInstance(path string) (*instanceLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open lock file: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if !errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("store: lock %s: %w", path, err)
		}
		return nil, fmt.Errorf("%w (data dir %s%s)", ErrLocked, filepath.Dir(path), holder(path))
	}
	// Written over the old id, then cut to length: the file is never empty
	// once a holder has written it.
	id := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if _, err := f.WriteAt(id, 0); err == nil {
		_ = f.Truncate(int64(len(id)))
	}
	return &instanceLock{f: f}, nil
}

// holder names the process that holds the lock, when its file says. A
// process that has just taken the lock may not have written its id yet:
// it is read again for a moment before the message goes without it.
func holder(path string) string {
	for range 20 {
		b, err := os.ReadFile(path)
		if err != nil {
			return ""
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			return ", held by pid " + strconv.Itoa(pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ""
}

func (l *instanceLock) release() error {
	// Closing the file drops the lock; the file stays, an empty lock is harmless.
	return l.f.Close()
}
