package retry

import (
	"testing"
	"time"
)

func TestBackoffDoublesUpToItsCap(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{
		{0, time.Minute}, {1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute},
		{6, 32 * time.Minute}, {7, time.Hour}, {1000, time.Hour},
	} {
		if got := Backoff(time.Minute, time.Hour, tt.n); got != tt.want {
			t.Errorf("Backoff(1m, 1h, %d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}
