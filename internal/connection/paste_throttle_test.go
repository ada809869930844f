package connection

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/web"
)

// A token pasted while Instagram's rate limit holds is refused with how
// long to wait, and the owner is told nothing changed.
func TestPasteDuringThrottleSaysHowLongToWait(t *testing.T) {
	for _, tc := range []struct {
		wait time.Duration
		want string
	}{{17 * time.Second, "about 18 seconds more"}, {5 * time.Minute, "about 6 minutes more"}} {
		err := pasteGraphErr(&graph.Error{Kind: graph.KindThrottled, Code: 4, RetryAfter: tc.wait})
		he, ok := web.As(err)
		if !ok || he.Status != http.StatusServiceUnavailable || he.Code != "instagram_throttled" ||
			he.RetryAfter != int(tc.wait.Seconds())+1 || !strings.Contains(he.Message, tc.want) || !strings.Contains(he.Message, "nothing was changed") {
			t.Errorf("wait %s: %+v", tc.wait, he)
		}
	}
}
