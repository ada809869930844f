package main

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildFeedd builds this command into a temporary dir once per test.
func buildFeedd(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "feedd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build feedd: %v\n%s", err, out)
	}
	return bin
}

// waitReady polls /readyz until it answers 200.
func waitReady(addr string, timeout time.Duration) error {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Three processes started at once on one data dir: exactly one serves; the
// others exit non-zero naming the dir and the process that holds it, and
// none of them trips over another's migration or key file.
func TestOneInstancePerSQLiteDataDir(t *testing.T) {
	bin := buildFeedd(t)
	for round := range 3 {
		dir := filepath.Join(t.TempDir(), "data")
		type run struct {
			addr   string
			cmd    *exec.Cmd
			stderr bytes.Buffer
			done   chan error
		}
		runs := make([]*run, 3)
		var start sync.WaitGroup
		for i := range runs {
			r := &run{addr: freePort(t), done: make(chan error, 1)}
			r.cmd = exec.Command(bin, "serve")
			r.cmd.Env = append(os.Environ(), "FEEDD_DATA_DIR="+dir, "FEEDD_ADDR="+r.addr,
				"FEEDD_ADMIN_TOKEN=instance-test-admin-token-0123456789", "FEEDD_LOG_LEVEL=warn")
			r.cmd.Stderr = &r.stderr
			runs[i] = r
		}
		for _, r := range runs {
			start.Go(func() {
				if err := r.cmd.Start(); err != nil {
					r.done <- err
					return
				}
				go func() { r.done <- r.cmd.Wait() }()
			})
		}
		start.Wait()

		// Two must give up; the third keeps serving.
		type exit struct {
			r   *run
			err error
		}
		exits := make(chan exit, len(runs))
		for _, r := range runs {
			go func() { exits <- exit{r, <-r.done} }()
		}
		gone := map[*run]bool{}
		for len(gone) < 2 {
			select {
			case x := <-exits:
				gone[x.r] = true
				var ee *exec.ExitError
				if !errors.As(x.err, &ee) || ee.ExitCode() == 0 {
					t.Errorf("round %d: an instance ended with %v, want a non-zero exit\n%s", round, x.err, x.r.stderr.String())
				}
				msg := x.r.stderr.String()
				if !strings.Contains(msg, "another feedd is running on this data dir") || !strings.Contains(msg, dir) {
					t.Errorf("round %d: refusal does not say why or where:\n%s", round, msg)
				}
				if !strings.Contains(msg, "held by pid ") {
					t.Errorf("round %d: refusal does not name the process:\n%s", round, msg)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("round %d: %d of 3 instances exited, want 2", round, len(gone))
			}
		}
		var winner *run
		for _, r := range runs {
			if !gone[r] {
				winner = r
			}
		}
		// Its listener is up once /readyz answers; it has not exited meanwhile.
		if err := waitReady(winner.addr, 30*time.Second); err != nil {
			t.Fatalf("round %d: the instance that won: %v\n%s", round, err, winner.stderr.String())
		}
		select {
		case x := <-exits:
			t.Fatalf("round %d: the third instance exited too: %v\n%s", round, x.err, x.r.stderr.String())
		default:
		}
		winner.done = make(chan error, 1)
		go func() { winner.done <- (<-exits).err }()
		for _, r := range runs {
			if s := r.stderr.String(); strings.Contains(s, "already exists") || strings.Contains(s, "migration") {
				t.Errorf("round %d: a migration raced:\n%s", round, s)
			}
		}
		lockPID, _ := os.ReadFile(filepath.Join(dir, "feedd.db.lock"))
		if got := strings.TrimSpace(string(lockPID)); got != strconv.Itoa(winner.cmd.Process.Pid) {
			t.Errorf("round %d: lock file names pid %q, the server is %d", round, got, winner.cmd.Process.Pid)
		}

		// reset-token runs beside the server, as it always has.
		reset := exec.Command(bin, "admin", "reset-token")
		reset.Env = append(os.Environ(), "FEEDD_DATA_DIR="+dir, "FEEDD_LOG_LEVEL=warn")
		if out, err := reset.CombinedOutput(); err != nil {
			t.Errorf("round %d: reset-token beside the server: %v\n%s", round, err, out)
		}

		winner.cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-winner.done:
			if err != nil {
				t.Errorf("round %d: the server stopped with %v\n%s", round, err, winner.stderr.String())
			}
		case <-time.After(30 * time.Second):
			winner.cmd.Process.Kill()
			t.Fatalf("round %d: the server did not stop", round)
		}
	}
}
