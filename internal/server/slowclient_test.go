package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// A client that sends its request too slowly, headers or body, is cut off
// by the read timeouts instead of holding a connection and a goroutine.
func TestSlowClientsAreCutOff(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.ReadHeaderTimeout = 200 * time.Millisecond
		o.ReadTimeout = 400 * time.Millisecond
	})
	if err := f.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	addr := f.srv.Addr().String()

	for _, tc := range []struct {
		name  string
		first string // sent at once; then the client stalls
	}{
		{"headers never finish", "GET /healthz HTTP/1.1\r\nHost: feedd.test\r\nX-Slow: "},
		{"body never finishes", "POST /api/admin/feeds HTTP/1.1\r\nHost: feedd.test\r\nAuthorization: Bearer " + testToken +
			"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\":"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tc.first); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			// The server answers (an error status) or closes; either way
			// the connection ends well before the client's own deadline.
			rest, err := io.ReadAll(bufio.NewReader(conn))
			if err != nil && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("after %s: %v (read %q)", time.Since(start), err, rest)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("a stalled client held the connection for %s", took)
			}
		})
	}
}
