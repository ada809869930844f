package app

import (
	"context"
	"log/slog"
	"time"
)

// mediaSweepInterval is how often an instance sharing media storage sweeps
// it again while running. A poll killed before it recorded its images
// leaves orphans younger than the grace period, which the start-up sweep
// of the restarted instance keeps; this removes them in time.
const mediaSweepInterval = 6 * time.Hour

// runMediaSweep sweeps the media rows and files every sweepEvery until ctx
// ends; a failed sweep is logged and tried again at the next tick.
func (m *Main) runMediaSweep(ctx context.Context) error {
	t := time.NewTicker(m.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := m.sweepMedia(ctx); err != nil && ctx.Err() == nil {
				m.Logger.Warn("media sweep failed", slog.Any("error", err))
			}
		}
	}
}
