package server

import (
	"strconv"
	"sync"
	"testing"
)

func TestCowKeepsEveryConcurrentStore(t *testing.T) {
	var c cow[string, int]
	if _, ok := c.load("a"); ok {
		t.Fatal("empty map has a key")
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				k := strconv.Itoa(g*100 + i)
				c.store(k, i)
				if v, ok := c.load(k); !ok || v != i {
					t.Errorf("%s: stored %d, read %d %v", k, i, v, ok)
				}
			}
		})
	}
	wg.Wait()
	for g := range 8 {
		for i := range 50 {
			if _, ok := c.load(strconv.Itoa(g*100 + i)); !ok {
				t.Fatalf("key %d lost", g*100+i)
			}
		}
	}
}
