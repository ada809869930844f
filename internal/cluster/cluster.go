// Package cluster coordinates feedd instances that share one database.
//
// Claims: each poll of a feed and each refresh of a token is claimed in the
// store before it runs (a lease naming the slot as read, see
// store.ClaimPoll), renewed while the work runs and released after it, so
// exactly one instance does each slot and the work of an instance that died
// is taken over once its lease lapses.
//
// Events: a change that drops a feed's cached answers on one instance
// (a finished poll, a status change, an owner's edit) is sent to the others
// with PostgreSQL's NOTIFY, and each of them drops its own. On SQLite there
// is one instance and nothing to send.
package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// NewInstanceID names this process among the instances sharing the
// database: its host name and a random suffix (a restarted instance is a
// new one, and its old claims lapse).
func NewInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "feedd"
	}
	// Host names may hold anything; keep the id short and plain.
	host = strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, host)
	if len(host) > 40 {
		host = host[:40]
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("cluster: register metrics: %w", err)
		}
	}
	return nil
}
