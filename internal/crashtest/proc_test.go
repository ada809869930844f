package crashtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// adminToken is the FEEDD_ADMIN_TOKEN every run of the demo gets, so the
// test can call the admin API with a bearer credential.
const adminToken = "crashtest-admin-token-0123456789abcdef"

// proc is one running "feedd demo" process.
type proc struct {
	cmd     *exec.Cmd
	base    string
	started time.Time
	exited  chan struct{}
	waitErr error
	// running is set once the demo printed that it is running, i.e. its
	// own connect and first poll of the demo feed are done.
	running atomic.Bool
	log     *os.File
	client  *http.Client
}

// stdoutWatch copies the demo's stdout to the log and notices the line
// that says the demo is ready.
type stdoutWatch struct {
	p   *proc
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *stdoutWatch) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if strings.Contains(w.buf.String(), "feedd demo is running") {
		w.p.running.Store(true)
	}
	return w.p.log.Write(b)
}

// freeAddr picks a loopback port to reuse across restarts, so URLs stored
// by one run (the OAuth redirect URI, media URLs) stay valid in the next.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startDemo starts "feedd demo --data-dir dir" listening on addr, its
// output appended to logPath.
func startDemo(bin, dir, addr, logPath string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(lf, "\n===== start %s =====\n", time.Now().Format(time.RFC3339Nano))
	p := &proc{base: "http://" + addr, exited: make(chan struct{}), log: lf}
	cmd := exec.Command(bin, "demo", "--data-dir", dir)
	cmd.Env = append(os.Environ(),
		"FEEDD_ADDR="+addr,
		"FEEDD_ADMIN_TOKEN="+adminToken,
		"FEEDD_LOG_LEVEL=warn",
		// Viewed feeds are re-polled by the server itself too, so kills
		// also land in background polls.
		"FEEDD_FETCH_INTERVAL=3s",
		// The crash test is about the data dir, not the Graph rate limit.
		"FEEDD_GRAPH_RATE=50",
		"FEEDD_GRAPH_BURST=50",
		// Visitor reads come from one client IP, faster than a visitor.
		"FEEDD_RATE_LIMIT=100000",
		// The background encoder runs through kills too. WebP alone: it
		// takes the worker's same path as AVIF at a tenth of the time, so
		// the final check can wait for every image.
		"FEEDD_MEDIA_FORMATS=webp",
	)
	cmd.Stdout = &stdoutWatch{p: p}
	cmd.Stderr = lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p.cmd, p.started = cmd, time.Now()
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	p.client = &http.Client{
		Timeout:       2 * time.Minute,
		Transport:     &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p, nil
}

// waitReady waits until /readyz answers 200.
func (p *proc) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("feedd exited before it was ready: %v", p.waitErr)
		default:
		}
		resp, err := c.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("feedd not ready after %s", timeout)
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() error {
	select {
	case <-p.exited:
		return fmt.Errorf("feedd had already exited: %v", p.waitErr)
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.exited
	p.client.CloseIdleConnections()
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			p.log.Close()
			return nil
		}
	}
	p.log.Close()
	return fmt.Errorf("feedd did not die of SIGKILL: %v", p.waitErr)
}

// alive reports whether the process is still running.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// tail returns the end of the log, for failure messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
