package cache

import (
	"context"
	"fmt"
	"testing"
)

// After InvalidateAll no group's entry is served fresh: every Get loads.
func TestInvalidateAllDropsEveryGroup(t *testing.T) {
	loads := map[string]int{}
	c, err := New(Options{Load: func(_ context.Context, group, key string) (*Entry, error) {
		loads[key]++
		return NewEntry(fmt.Appendf(nil, "%s v%d", key, loads[key]), nil)
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	groups := []string{"aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"}
	for _, g := range groups {
		if _, _, err := c.Get(ctx, g, g); err != nil {
			t.Fatal(err)
		}
	}
	c.InvalidateAll()
	for _, g := range groups {
		e, r, err := c.Get(ctx, g, g)
		if err != nil {
			t.Fatal(err)
		}
		if r != Miss || string(e.JSON) != g+" v2" {
			t.Errorf("%s after InvalidateAll: %v %q, want a new load", g, r, e.JSON)
		}
	}
}
