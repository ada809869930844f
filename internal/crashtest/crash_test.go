package crashtest

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// feeddBin is the binary under test, built once by TestMain.
var feeddBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // the test skips itself; nothing to build
	}
	if bin := os.Getenv("FEEDD_CRASH_BIN"); bin != "" {
		feeddBin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "feedd-crashtest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashtest:", err)
		os.Exit(1)
	}
	feeddBin = filepath.Join(dir, "feedd")
	build := exec.Command("go", "build", "-o", feeddBin, "github.com/feedd/feedd/cmd/feedd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "crashtest: build feedd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// envInt reads a positive whole number from the environment.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}

// maxKillDelay bounds the random time from the start of the work (or of
// the process, for a kill during start-up) to the SIGKILL.
const maxKillDelay = 1500 * time.Millisecond

// startupKillEvery: about one kill in this many lands during start-up
// (migrations, media sweep, the demo's own connect) instead of during work.
const startupKillEvery = 6

// TestCrashSafety kills the real binary with SIGKILL at random moments of
// polls, refreshes, media writes and admin changes, restarting it each
// time on the same data dir, and checks that nothing was lost or broken.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs the real binary for about a minute; skipped with -short")
	}
	kills := envInt(t, "FEEDD_CRASH_KILLS", 8)
	workers := envInt(t, "FEEDD_CRASH_WORKERS", 3)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("FEEDD_CRASH_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FEEDD_CRASH_SEED=%q: want a whole number", v)
		}
		seed = s
	}
	t.Logf("seed %d (replay the same kill moments and operations with FEEDD_CRASH_SEED=%d), %d kills, %d workers", seed, seed, kills, workers)

	dir, err := os.MkdirTemp("", "feedd-crashtest-data-")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "feedd.log")
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("FEEDD_CRASH_KEEP") != "" {
			t.Logf("data dir and log kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	began := time.Now()
	m := newModel()
	chk := newChecker(dataDir)
	phases := map[string]int{}
	var (
		tempKills, orphanKills int
		temps, orphans         int
		opsDone                = map[string]int{}
		cur                    *proc
	)
	t.Cleanup(func() {
		if cur != nil && cur.alive() {
			_ = cur.kill()
		}
	})
	report := func() {
		if len(chk.problems) == 0 {
			return
		}
		for _, p := range chk.problems {
			t.Error(p)
		}
		t.Logf("feedd log (end):\n%s", tail(logPath, 4000))
		t.FailNow()
	}

	var last *deadState
	for i := 0; i <= kills; i++ {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		p, err := startDemo(feeddBin, dataDir, addr, logPath)
		if err != nil {
			t.Fatal(err)
		}
		cur = p
		startup := i > 0 && i < kills && rng.IntN(startupKillEvery) == 0
		if startup {
			// Kill during start-up; the next start checks what this one left.
			delay := time.Duration(rng.Int64N(int64(maxKillDelay)))
			time.Sleep(time.Until(p.started.Add(delay)))
			if err := p.kill(); err != nil {
				t.Fatalf("kill %d: %v\n%s", i+1, err, tail(logPath, 2000))
			}
			phases["startup"]++
			ds, err := chk.checkDead(ctx, m)
			if err != nil {
				t.Fatalf("kill %d: %v", i+1, err)
			}
			report()
			t.Logf("kill %d/%d: %s after start, during start-up; %d new temp, %d orphaned files", i+1, kills, delay.Round(time.Millisecond), newTemps(ds, last), len(ds.media.orphans))
			tally(ds, last, &tempKills, &orphanKills, &temps, &orphans)
			last = ds
			continue
		}
		if err := p.waitReady(90 * time.Second); err != nil {
			t.Fatalf("start %d: %v\n%s", i+1, err, tail(logPath, 3000))
		}
		if last != nil {
			if err := chk.checkLive(ctx, p, m, last); err != nil {
				t.Fatalf("after kill %d: %v\n%s", i, err, tail(logPath, 3000))
			}
			report()
		}
		if i == kills {
			// The encoder resumes what the kills interrupted: every image
			// gets its formats, and the last stop leaves nothing behind.
			if err := chk.formatsDone(ctx); err != nil {
				t.Fatal(err)
			}
			report()
			if err := p.kill(); err != nil {
				t.Fatal(err)
			}
			ds, err := chk.checkDead(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			report()
			if len(ds.media.orphans) > 0 || newTemps(ds, last) > 0 || ds.pendingFormats > 0 {
				t.Fatalf("after the encoder finished: %d orphaned files (e.g. %v), %d new temp files, %d images lacking a format",
					len(ds.media.orphans), ds.media.orphans[:min(3, len(ds.media.orphans))], newTemps(ds, last), ds.pendingFormats)
			}
			break
		}

		// Work, then SIGKILL at a random moment of it.
		var killing atomic.Bool
		ws := make([]*worker, workers)
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for w := range ws {
			ws[w] = &worker{id: w, iter: i, rng: rand.New(rand.NewPCG(seed^uint64(w+1)*0x9e3779b97f4a7c15, uint64(i))), p: p, m: m, killing: &killing}
			ws[w].current.Store("")
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[w] = ws[w].run()
			}()
		}
		delay := time.Duration(rng.Int64N(int64(maxKillDelay)))
		time.Sleep(delay)
		var inFlight []string
		for _, w := range ws {
			if op := w.current.Load().(string); op != "" {
				inFlight = append(inFlight, op)
			}
		}
		if !p.running.Load() {
			inFlight = append(inFlight, "demo-connect")
		}
		killing.Store(true)
		if err := p.kill(); err != nil {
			t.Fatalf("kill %d: %v\n%s", i+1, err, tail(logPath, 2000))
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Errorf("before kill %d: %v", i+1, err)
			}
		}
		for _, w := range ws {
			for op, n := range w.ops {
				opsDone[op] += n
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		sort.Strings(inFlight)
		label := strings.Join(dedupe(inFlight), "+")
		if label == "" {
			label = "idle"
		}
		for _, op := range dedupe(inFlight) {
			phases[op]++
		}
		if len(inFlight) == 0 {
			phases["idle"]++
		}
		ds, err := chk.checkDead(ctx, m)
		if err != nil {
			t.Fatalf("kill %d: %v", i+1, err)
		}
		report()
		if newTemps(ds, last) > 0 {
			phases["media-write"]++
			label += " (mid media write)"
		}
		if ds.pendingFormats > 0 {
			phases["formats-pending"]++
			label += fmt.Sprintf(" (%d images awaiting formats)", ds.pendingFormats)
		}
		t.Logf("kill %d/%d: %s into the work, in flight: %s; %d new temp, %d orphaned files", i+1, kills, delay.Round(time.Millisecond), label, newTemps(ds, last), len(ds.media.orphans))
		tally(ds, last, &tempKills, &orphanKills, &temps, &orphans)
		last = ds
	}

	t.Logf("CRASH SUMMARY: %d kills in %s (seed %d, %d workers); kills by what was in flight (a kill may count under several): %s; "+
		"kills that left half-written media: %d (%d temp files, never served), that left orphaned media: %d (%d files, all swept at start); "+
		"operations acknowledged: %s; pictures verified after restarts: %d; post counts compared with their floor: %d; "+
		"checks passed after every kill: integrity_check ok, foreign keys ok, all tokens decrypt, no posts lost, acknowledged admin changes kept, every picture a complete JPEG",
		kills, time.Since(began).Round(time.Second), seed, workers, counts(phases),
		tempKills, temps, orphanKills, orphans, counts(opsDone), chk.served, chk.floors)
}

// newTemps counts the temp files this kill left (older ones stay until
// they are old enough for the start-up sweep).
func newTemps(ds, last *deadState) int {
	old := map[string]bool{}
	if last != nil {
		for _, f := range last.media.temps {
			old[f] = true
		}
	}
	n := 0
	for _, f := range ds.media.temps {
		if !old[f] {
			n++
		}
	}
	return n
}

func tally(ds, last *deadState, tempKills, orphanKills, temps, orphans *int) {
	if n := newTemps(ds, last); n > 0 {
		*tempKills++
		*temps += n
	}
	if n := len(ds.media.orphans); n > 0 {
		*orphanKills++
		*orphans += n
	}
}

func dedupe(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}
