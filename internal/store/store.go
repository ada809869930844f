// Package store keeps feedd's state in SQL: feeds, connected Instagram
// accounts, encrypted tokens, post snapshots, stored images, OAuth states,
// admin credentials and deletion requests.
//
// Two engines run the same code through database/sql. SQLite
// (modernc.org/sqlite, no cgo) is the embedded default: one writer
// connection serialises writes (transactions begin IMMEDIATE, so they never
// fail half-way with SQLITE_BUSY) and a separate pool serves reads from the
// WAL. PostgreSQL (pgx) serves several instances from one pool; there a
// write's condition is read under a row lock, so check and write stay one
// step against other instances. Queries are written once with ? placeholders
// and rebound for PostgreSQL; the few statements that differ live in the
// dialect. Tokens are sealed with a secret.Box bound to their feed id, so
// the database never holds one in the clear.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/secret"
)

// Sentinel errors.
var (
	ErrConflict     = errors.New("store: already exists")
	ErrLinkUsed     = errors.New("store: setup link already used")
	ErrLinkExpired  = errors.New("store: setup link expired")
	ErrWrongKey     = errors.New("store: FEEDD_SECRET_KEY does not match the key this data was encrypted with")
	ErrSchemaTooNew = errors.New("store: database schema is newer than this feedd; upgrade feedd")
	ErrInvalid      = errors.New("store: invalid value")
)

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFS embed.FS

// Options configures a Store.
type Options struct {
	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default: discard
	// Lock makes Open of a SQLite file hold the instance lock beside it
	// until Close: a second process opening the same file with Lock fails
	// with ErrLocked. A short-lived command that runs beside the server
	// opens without it.
	Lock bool
}

// Store is feedd's database. It is safe for concurrent use.
type Store struct {
	w    *sql.DB // SQLite: the single writer connection; PostgreSQL: the pool
	r    *sql.DB // SQLite: the read pool; PostgreSQL: the same pool as w
	d    *dialect
	lock *instanceLock // SQLite with Options.Lock
	box  *secret.Box
	now  func() time.Time
	log  *slog.Logger

	closeOnce sync.Once
	closeErr  error
}

// DSN returns the driver data source name for path with feedd's pragmas.
// busy_timeout comes first so that switching to WAL waits for other
// connections instead of failing.
func DSN(path string, readOnly bool) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("store: database path: %w", err)
	}
	q := []string{"_pragma=busy_timeout(5000)"}
	if readOnly {
		q = append(q, "_pragma=foreign_keys(1)", "_pragma=query_only(1)")
	} else {
		q = append(q, "_pragma=journal_mode(WAL)", "_pragma=foreign_keys(1)", "_pragma=synchronous(NORMAL)", "_txlock=immediate")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: strings.Join(q, "&")}
	return u.String(), nil
}

// Open opens (creating if needed) the SQLite database at path, applies
// pending migrations, checks that box holds the key the data was sealed with
// (ErrWrongKey otherwise) and re-seals tokens sealed with a previous key.
func Open(ctx context.Context, path string, box *secret.Box, opts Options) (_ *Store, err error) {
	s, err := newStore(box, opts, sqliteDialect)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	wdsn, err := DSN(path, false)
	if err != nil {
		return nil, err
	}
	// Create the file private before SQLite does (it would use 0644); the
	// WAL and shared-memory files inherit its mode.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create data dir: %w", err)
	}
	if opts.Lock {
		// Before the first migration: a second instance must not race it.
		if s.lock, err = lockInstance(path + ".lock"); err != nil {
			return nil, err
		}
	}
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("store: create database: %w", err)
	}
	rdsn, _ := DSN(path, true)
	if s.w, err = sql.Open("sqlite", wdsn); err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	if err := s.w.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	if s.r, err = sql.Open("sqlite", rdsn); err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.r.SetMaxOpenConns(n)
	s.r.SetMaxIdleConns(n)
	if err := s.checkKey(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func newStore(box *secret.Box, opts Options, d *dialect) (*Store, error) {
	if box == nil {
		return nil, errors.New("store: no secret box")
	}
	s := &Store{box: box, now: opts.Now, log: opts.Logger, d: d}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Close closes the database (SQLite checkpoints the WAL on the last close)
// and releases the instance lock. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.r != nil && s.r != s.w {
			s.closeErr = s.r.Close()
		}
		if s.w != nil {
			s.closeErr = errors.Join(s.closeErr, s.w.Close())
		}
		if s.lock != nil {
			s.closeErr = errors.Join(s.closeErr, s.lock.release())
		}
	})
	return s.closeErr
}

// Ping reports whether the database answers a query (for /readyz).
func (s *Store) Ping(ctx context.Context) error {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Checkpoint moves SQLite's WAL into the main database file; PostgreSQL
// has nothing to do.
func (s *Store) Checkpoint(ctx context.Context) error {
	if s.d.checkpoint == "" {
		return nil
	}
	_, err := s.w.ExecContext(ctx, s.d.checkpoint)
	return err
}

type migration struct {
	version int
	name    string
	sql     string
}

func migrations(engine string) ([]migration, error) {
	dir := "migrations/" + engine
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), ".sql")
		if !ok {
			continue
		}
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("store: bad migration file name %q", e.Name())
		}
		body, err := migrationFS.ReadFile(dir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("store: two migrations numbered %d", out[i].version)
		}
	}
	return out, nil
}

// SchemaVersion is the newest migration this build knows.
func SchemaVersion() int {
	ms, err := migrations(sqliteDialect.name)
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate applies the pending migrations in one transaction that first
// takes the engine's migration lock and then reads the schema version, so
// instances starting at once apply each migration once.
func (s *Store) migrate(ctx context.Context) error {
	var applied []migration
	err := s.exclusive(ctx, func(tx *sql.Tx) error {
		var err error
		applied, err = applyMigrations(ctx, tx, s.d, s.now())
		return err
	})
	if err != nil {
		return err
	}
	for _, m := range applied {
		s.log.Info("database migrated", slog.Int("version", m.version), slog.String("name", m.name), slog.String("engine", s.d.name))
	}
	return nil
}

// applyMigrations brings the schema in tx to this build's version and
// returns the migrations it applied.
func applyMigrations(ctx context.Context, tx *sql.Tx, d *dialect, now time.Time) ([]migration, error) {
	ms, err := migrations(d.name)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, d.migrationsTable); err != nil {
		return nil, fmt.Errorf("store: migrations table: %w", err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return nil, fmt.Errorf("store: read schema version: %w", err)
	}
	if len(ms) > 0 && cur > ms[len(ms)-1].version {
		return nil, fmt.Errorf("%w (database at %d, feedd knows %d)", ErrSchemaTooNew, cur, ms[len(ms)-1].version)
	}
	var applied []migration
	for _, m := range ms {
		if m.version <= cur {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return nil, fmt.Errorf("store: migration %04d_%s: %w", m.version, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, now.Unix()); err != nil {
			return nil, fmt.Errorf("store: migration %04d_%s: %w", m.version, m.name, err)
		}
		applied = append(applied, m)
	}
	return applied, nil
}

const (
	keyCheckName  = "key_check"
	keyCheckValue = "feedd key check"
)

var keyCheckAAD = []byte("feedd/meta/key_check")

func tokenAAD(feedID string) []byte { return []byte("feedd/token/" + feedID) }

// checkKey verifies the box against the sealed key_check row (sealing one
// on first start) and re-seals values sealed with a previous key.
func (s *Store) checkKey(ctx context.Context) error {
	return s.exclusive(ctx, func(tx *sql.Tx) error {
		var sealed []byte
		err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, keyCheckName).Scan(&sealed)
		if errors.Is(err, sql.ErrNoRows) {
			v, err := s.box.Seal([]byte(keyCheckValue), keyCheckAAD)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)`, keyCheckName, v)
			return err
		}
		if err != nil {
			return fmt.Errorf("store: read key check: %w", err)
		}
		pt, err := s.box.Open(sealed, keyCheckAAD)
		if err != nil || string(pt) != keyCheckValue {
			return ErrWrongKey
		}
		if !s.box.NeedsRotation(sealed) {
			return nil
		}
		v, err := s.box.Seal([]byte(keyCheckValue), keyCheckAAD)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = ?`, v, keyCheckName); err != nil {
			return err
		}
		return s.rotateTokens(ctx, tx)
	})
}

func (s *Store) rotateTokens(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT feed_id, sealed FROM tokens`)
	if err != nil {
		return err
	}
	type row struct {
		id     string
		sealed []byte
	}
	var todo []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.sealed); err != nil {
			rows.Close()
			return err
		}
		if s.box.NeedsRotation(r.sealed) {
			todo = append(todo, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	n := 0
	for _, r := range todo {
		pt, err := s.box.Open(r.sealed, tokenAAD(r.id))
		if err != nil {
			s.log.Warn("token cannot be decrypted; the feed must be reconnected", slog.String("feed", r.id))
			continue
		}
		v, err := s.box.Seal(pt, tokenAAD(r.id))
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tokens SET sealed = ? WHERE feed_id = ?`, v, r.id); err != nil {
			return err
		}
		n++
	}
	m, err := s.rotateSourceTokens(ctx, tx)
	if err != nil {
		return err
	}
	s.log.Info("tokens re-encrypted with the current key", slog.Int("tokens", n+m))
	return nil
}

// rotateSourceTokens re-seals the further sources' tokens with the current
// key, as rotateTokens does the main ones.
func (s *Store) rotateSourceTokens(ctx context.Context, tx *sql.Tx) (int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT feed_id, id, sealed FROM sources`)
	if err != nil {
		return 0, err
	}
	type row struct {
		feed, id string
		sealed   []byte
	}
	var todo []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.feed, &r.id, &r.sealed); err != nil {
			rows.Close()
			return 0, err
		}
		if s.box.NeedsRotation(r.sealed) {
			todo = append(todo, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, r := range todo {
		pt, err := s.box.Open(r.sealed, sourceAAD(r.feed, r.id))
		if err != nil {
			s.log.Warn("token cannot be decrypted; the source must be reconnected", slog.String("feed", r.feed), slog.String("source", r.id))
			continue
		}
		v, err := s.box.Seal(pt, sourceAAD(r.feed, r.id))
		if err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sources SET sealed = ? WHERE feed_id = ? AND id = ?`, v, r.feed, r.id); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// write runs fn in one transaction: all of it commits or none of it does.
// On SQLite it is IMMEDIATE on the one writer connection, so nothing else
// writes meanwhile; on PostgreSQL it is READ COMMITTED, and fn reads the
// rows its condition depends on with s.d.forUpdate (or writes them with one
// conditional statement).
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.inTx(ctx, "", fn)
}

// exclusive is write for start-up work (migrations, the key check) that
// must run once at a time across every instance sharing the database.
func (s *Store) exclusive(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.inTx(ctx, s.d.exclusiveLock, fn)
}

func (s *Store) inTx(ctx context.Context, first string, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if first != "" {
		if _, err := tx.ExecContext(ctx, first); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("store: lock: %w", err)
		}
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// Time helpers: INTEGER unix seconds, NULL for the zero time.

func unix(t time.Time) int64 { return t.Unix() }

func nullUnix(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
}

func fromUnix(n int64) time.Time { return time.Unix(n, 0).UTC() }

func fromNullUnix(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromUnix(n.Int64)
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullInt(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func ptrInt(n sql.NullInt64) *int64 {
	if !n.Valid {
		return nil
	}
	v := n.Int64
	return &v
}

func ptrString(n sql.NullString) *string {
	if !n.Valid {
		return nil
	}
	v := n.String
	return &v
}

func nullPtrString(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func rowsAffected(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return model.ErrNotFound
	}
	return nil
}

// isConstraint reports a UNIQUE or PRIMARY KEY violation.
func isConstraint(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		// SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE
		return se.Code() == 1555 || se.Code() == 2067
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" // unique_violation
}
