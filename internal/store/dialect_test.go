package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/store/storetest"
)

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE b = ? AND c IN (?, ?)`, `SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)`},
		{`SELECT '?' || ? FROM t`, `SELECT '?' || $1 FROM t`},
		{`SELECT 'it''s ?', ? FROM "odd?name"`, `SELECT 'it''s ?', $1 FROM "odd?name"`},
		{"SELECT ? -- why?\nFROM t WHERE x = ?", "SELECT $1 -- why?\nFROM t WHERE x = $2"},
		{`SELECT 'unterminated ?`, `SELECT 'unterminated ?`},
	} {
		if got := rebind(tc.in); got != tc.want {
			t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Both engines know the same migrations: the same numbers and names.
func TestMigrationsMatchBetweenEngines(t *testing.T) {
	lite, err := migrations(sqliteDialect.name)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := migrations(postgresDialect.name)
	if err != nil {
		t.Fatal(err)
	}
	names := func(ms []migration) []string {
		var out []string
		for _, m := range ms {
			out = append(out, fmt.Sprintf("%04d_%s", m.version, m.name))
		}
		return out
	}
	if a, b := strings.Join(names(lite), " "), strings.Join(names(pg), " "); a != b {
		t.Errorf("migrations differ:\nsqlite:   %s\npostgres: %s", a, b)
	}
}

func TestURLValidation(t *testing.T) {
	for _, ok := range []string{"postgres://u:p@db:5432/feedd", "postgresql://db/feedd?sslmode=require"} {
		if err := ValidateURL(ok); err != nil {
			t.Errorf("ValidateURL(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "mysql://u:hunter2@db/feedd", "/var/lib/feedd", "postgres://", "host=db password=hunter2"} {
		err := ValidateURL(bad)
		if !errors.Is(err, ErrBadURL) {
			t.Errorf("ValidateURL(%q) = %v, want ErrBadURL", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
	}
	if got := RedactURL("postgres://feedd:hunter2@db/feedd"); strings.Contains(got, "hunter2") || !strings.Contains(got, "db/feedd") {
		t.Errorf("RedactURL = %q", got)
	}
}

// A URL pgx refuses or a server that refuses the connection is reported
// with the URL, never with its password.
func TestPostgresConnectErrorHidesThePassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, u := range []string{
		"postgres://feedd:hunter2@127.0.0.1:1/feedd?connect_timeout=2", // nothing listens
		"postgres://feedd:hunter2@127.0.0.1:99999/feedd",               // pgx cannot parse it
		"postgres://feedd:hunter2@127.0.0.1/feedd?sslmode=bogus",
	} {
		_, err := OpenPostgres(ctx, u, box(t, key(1)), Options{})
		if err == nil {
			t.Fatalf("%s: no error", u)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
		if !strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("error does not say where: %v", err)
		}
	}
}

// Replicas that start at once on an empty database migrate it once: none
// fails with "relation already exists", all end on the newest schema and
// agree on the key check.
func TestPostgresReplicasStartingAtOnceMigrateOnce(t *testing.T) {
	url := storetest.PostgresURL(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := OpenPostgres(ctx, url, box(t, key(1)), Options{})
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("replica start: %v", err)
	}
	s, err := OpenPostgres(ctx, url, box(t, key(1)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n, top int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &top); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion() || top != SchemaVersion() {
		t.Errorf("schema_migrations: %d rows up to %d, want %d", n, top, SchemaVersion())
	}
}

// Two instances racing the same conditional write: exactly one wins, on
// every engine. On PostgreSQL each racer is its own Store (its own pool),
// as two replicas would be.
func TestConditionalWritesRacingOnlyOneWins(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		other, err := e.reopen(t, box(t, key(1)), Options{Now: e.clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "f", nil))
		connect(t, e.s, f.ID, "1", "IGAAtoken-0")

		// race runs fn on both stores at once, rounds times, after setup;
		// a loser must fail with one of lost.
		race := func(name string, setup func(round int), fn func(s *Store, round int) error, lost ...error) {
			t.Helper()
			for round := range 8 {
				setup(round)
				var wg sync.WaitGroup
				results := make([]error, 2)
				start := make(chan struct{})
				for i, s := range []*Store{e.s, other} {
					wg.Go(func() { <-start; results[i] = fn(s, round) })
				}
				close(start)
				wg.Wait()
				wins := 0
				for _, err := range results {
					switch {
					case err == nil:
						wins++
					case !errorIsAny(err, lost...):
						t.Fatalf("%s round %d: unexpected error %v", name, round, err)
					}
				}
				if wins != 1 {
					t.Fatalf("%s round %d: %d winners (%v), want 1", name, round, wins, results)
				}
			}
		}
		hash := func(kind string, round int) []byte { return fmt.Appendf(nil, "%-24s%08d", kind, round) }

		race("ConsumeSetupLink", func(round int) {
			if err := e.s.CreateSetupLink(ctx, hash("link", round), t0.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}, func(s *Store, round int) error {
			return s.ConsumeSetupLink(ctx, hash("link", round), t0)
		}, ErrLinkUsed)

		race("ConsumeState", func(round int) {
			if err := e.s.CreateState(ctx, model.OAuthState{Hash: hash("state", round), FeedID: f.ID, ExpiresAt: t0.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}, func(s *Store, round int) error {
			_, err := s.ConsumeState(ctx, hash("state", round), t0)
			return err
		}, model.ErrStateUsed)

		// Both see the token fail: the status changes once, so the owner
		// hears of it once.
		var gen int64
		race("ChangeStatus", func(int) {
			if err := e.setStatus(t, f.ID, model.StatusActive, ""); err != nil {
				t.Fatal(err)
			}
			gen = e.gen(t, f.ID)
		}, func(s *Store, round int) error {
			_, changed, err := s.ChangeStatus(ctx, model.StatusChange{FeedID: f.ID, Generation: gen, To: model.StatusNeedsReauth,
				Reason: "expired", IfToken: "IGAAtoken-0"})
			if err == nil && !changed {
				return errUnchanged
			}
			return err
		}, errUnchanged)

		race("Connect", func(int) { gen = e.gen(t, f.ID) }, func(s *Store, round int) error {
			_, _, err := s.Connect(ctx, f.ID, gen, model.Account{IGUserID: "1"},
				model.Token{AccessToken: "IGAAtoken-0", TokenInfo: model.TokenInfo{ExpiresAt: t0.Add(time.Hour)}})
			return err
		}, model.ErrConnectionChanged)

		race("ReplaceToken", func(int) {}, func(s *Store, round int) error {
			return s.ReplaceToken(ctx, f.ID, fmt.Sprintf("IGAAtoken-%d", round),
				model.Token{AccessToken: fmt.Sprintf("IGAAtoken-%d", round+1), TokenInfo: model.TokenInfo{ExpiresAt: t0.Add(time.Hour)}})
		}, model.ErrTokenChanged)
		if tok := must[model.Token](t)(e.s.Token(ctx, f.ID)); tok.AccessToken != "IGAAtoken-8" {
			t.Errorf("token after 8 refresh races = %q, want IGAAtoken-8", tok.AccessToken)
		}
	})
}

var errUnchanged = errors.New("status was already changed")

func errorIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// An OAuth state created while another instance deletes its feed is either
// stored (and deleted with the feed) or refused as not found: never a
// foreign-key error.
func TestStateRacingTheDeletionOfItsFeed(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		other, err := e.reopen(t, box(t, key(1)), Options{Now: e.clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		for round := range 20 {
			f := must[model.Feed](t)(e.s.CreateFeed(ctx, "f", nil))
			var wg sync.WaitGroup
			var createErr, deleteErr error
			wg.Go(func() {
				createErr = other.CreateState(ctx, model.OAuthState{Hash: fmt.Appendf(nil, "race state %d", round), FeedID: f.ID, ExpiresAt: t0.Add(time.Hour)})
			})
			wg.Go(func() { _, deleteErr = e.s.DeleteFeed(ctx, f.ID) })
			wg.Wait()
			if deleteErr != nil {
				t.Fatalf("round %d: delete: %v", round, deleteErr)
			}
			if createErr != nil && !errors.Is(createErr, model.ErrNotFound) {
				t.Fatalf("round %d: create state: %v, want success or ErrNotFound", round, createErr)
			}
			if _, err := e.s.ConsumeState(ctx, fmt.Appendf(nil, "race state %d", round), t0); !errors.Is(err, model.ErrStateNotFound) {
				t.Fatalf("round %d: a state of a deleted feed: %v", round, err)
			}
		}
	})
}
