package media

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// tidier is a backend with leftovers of its own: a Local directory's
// interrupted temp files and empty shard directories.
type tidier interface {
	tidy(cutoff time.Time) (removed int, bytes int64, err error)
}

// Sweep removes every stored file for which keep returns false and that
// is older than the grace period (Options.SweepGrace), and a local
// directory's stale temp files, and recounts the stored bytes. The grace
// period makes it safe while other instances share the storage: a file
// put, or put again, since then may belong to a poll that has not
// recorded it yet. Objects whose names are not stored files' (other
// programs' objects, probes) are never touched, and an S3 backend lists
// only its own prefix.
func (s *Store) Sweep(ctx context.Context, keep func(file string) bool) (removed int, bytes int64, err error) {
	now := s.now()
	cutoff := now.Add(-s.grace)
	var errs []error
	var total int64
	var doomed []ObjectInfo
	lerr := s.backend.List(ctx, func(oi ObjectInfo) error {
		if !validName(oi.Name) {
			return nil
		}
		if keep(oi.Name) || !oi.ModTime.Before(cutoff) {
			total += oi.Size
			return nil
		}
		doomed = append(doomed, oi)
		return nil
	})
	if lerr != nil {
		// A partial listing would undercount; keep the count as it was.
		return 0, 0, fmt.Errorf("media: sweep: %w", lerr)
	}
	for _, oi := range doomed {
		if err := s.remove(ctx, oi.Name); err != nil {
			errs = append(errs, fmt.Errorf("media: sweep %s: %w", oi.Name, err))
			total += oi.Size
			continue
		}
		removed++
		bytes += oi.Size
	}
	if t, ok := s.backend.(tidier); ok {
		n, b, err := t.tidy(now.Add(-staleTemp))
		removed += n
		bytes += b
		errs = append(errs, err)
	}
	s.stored.Store(total)
	return removed, bytes, errors.Join(errs...)
}
