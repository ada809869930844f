package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/feedd/feedd/internal/secret"
)

// ErrBadURL reports a FEEDD_DATABASE_URL that is not a PostgreSQL URL.
var ErrBadURL = errors.New("store: the database URL must be postgres://user:password@host:port/dbname")

// dialect is what differs between the engines. Everything else (every
// query of the store, with ? placeholders) is shared.
type dialect struct {
	name string // "sqlite" or "postgres"; also the migrations directory

	// forUpdate ends a SELECT inside a write whose rows the write's
	// condition depends on: PostgreSQL locks them until commit, SQLite
	// needs nothing since its writes are serialised.
	forUpdate string
	// exclusiveLock, run first in a start-up transaction, makes instances
	// sharing one database take turns (migrations, the key check).
	exclusiveLock   string
	migrationsTable string
	checkpoint      string // "" when the engine has none

	// The statements that read the JSON in posts.children and media.variants.
	childRefs  string // INSERT the media_refs of a feed's carousel children; args: feed id
	fileShared string // SELECT EXISTS: does a media row name file ?
	mediaFiles string // SELECT DISTINCT every file named by a media row
}

var sqliteDialect = &dialect{
	name: "sqlite",
	migrationsTable: `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`,
	checkpoint: `PRAGMA wal_checkpoint(TRUNCATE)`,
	childRefs: `INSERT INTO media_refs (feed_id, key)
		SELECT p.feed_id, json_extract(c.value, '$.media_key') FROM posts p, json_each(p.children) c
		WHERE p.feed_id = ? AND coalesce(json_extract(c.value, '$.media_key'), '') != ''
		ON CONFLICT DO NOTHING`,
	fileShared: `SELECT EXISTS (SELECT 1 FROM media, json_each(media.variants) v WHERE json_extract(v.value, '$.file') = ?)`,
	mediaFiles: `SELECT DISTINCT json_extract(v.value, '$.file') FROM media, json_each(media.variants) v`,
}

// postgresLockKey is the advisory lock feedd's start-up transactions take
// on PostgreSQL ("feedd" in ASCII).
const postgresLockKey = 0x6665656464

var postgresDialect = &dialect{
	name:          "postgres",
	forUpdate:     " FOR UPDATE",
	exclusiveLock: `SELECT pg_advisory_xact_lock(` + strconv.Itoa(postgresLockKey) + `)`,
	migrationsTable: `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at BIGINT NOT NULL
	)`,
	childRefs: `INSERT INTO media_refs (feed_id, key)
		SELECT p.feed_id, c.value ->> 'media_key' FROM posts p, jsonb_array_elements(p.children::jsonb) c
		WHERE p.feed_id = ? AND coalesce(c.value ->> 'media_key', '') != ''
		ON CONFLICT DO NOTHING`,
	fileShared: `SELECT EXISTS (SELECT 1 FROM media, jsonb_array_elements(media.variants::jsonb) v WHERE v.value ->> 'file' = ?)`,
	mediaFiles: `SELECT DISTINCT v.value ->> 'file' FROM media, jsonb_array_elements(media.variants::jsonb) v`,
}

// postgresMaxConns bounds the pool of a PostgreSQL store: reads and writes
// share it.
const postgresMaxConns = 16

// ValidateURL checks that raw is a PostgreSQL URL. Its error never holds
// the password.
func ValidateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return ErrBadURL
	}
	return nil
}

// RedactURL returns the URL with its password replaced, for messages.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// OpenPostgres opens the PostgreSQL database at dsn (a postgres:// URL),
// applies pending migrations under an advisory lock (replicas starting at
// once take turns), checks that box holds the key the data was sealed with
// (ErrWrongKey otherwise) and re-seals tokens sealed with a previous key.
func OpenPostgres(ctx context.Context, dsn string, box *secret.Box, opts Options) (_ *Store, err error) {
	if err := ValidateURL(dsn); err != nil {
		return nil, err
	}
	s, err := newStore(box, opts, postgresDialect)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the URL with its password redacted.
		return nil, fmt.Errorf("store: database URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	db := sql.OpenDB(rebindConnector{stdlib.GetConnector(*cfg)})
	db.SetMaxOpenConns(postgresMaxConns)
	db.SetMaxIdleConns(postgresMaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s.w, s.r = db, db
	if err := db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("store: connect to %s: %w", RedactURL(dsn), err)
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	if err := s.checkKey(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// rebind turns the store's ? placeholders into PostgreSQL's $1, $2, ...,
// leaving ? inside quoted literals, quoted identifiers and comments alone.
func rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			// Copy through the closing quote; a doubled quote stays inside.
			j := i + 1
			for j < len(q) {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c {
						j += 2
						continue
					}
					break
				}
				j++
			}
			end := min(j+1, len(q))
			b.WriteString(q[i:end])
			i = end - 1
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			end := strings.IndexByte(q[i:], '\n')
			if end < 0 {
				end = len(q) - i
			}
			b.WriteString(q[i : i+end])
			i += end - 1
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// rebindConnector hands out pgx connections that rebind every query, so
// the store's code (and every file added to it) writes ? on both engines.
type rebindConnector struct{ driver.Connector }

func (c rebindConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	pc, ok := conn.(*stdlib.Conn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("store: unexpected pgx connection type %T", conn)
	}
	return rebindConn{pc}, nil
}

// rebindConn is a pgx connection whose query entry points rebind; every
// other method (transactions, pings, session reset) is pgx's own.
type rebindConn struct{ *stdlib.Conn }

func (c rebindConn) Prepare(query string) (driver.Stmt, error) {
	return c.Conn.Prepare(rebind(query))
}

func (c rebindConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, rebind(query))
}

// A statement without arguments has no placeholders: it runs as written
// (a migration may hold a ? in a function body).
func (c rebindConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if len(args) > 0 {
		query = rebind(query)
	}
	return c.Conn.ExecContext(ctx, query, args)
}

func (c rebindConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) > 0 {
		query = rebind(query)
	}
	return c.Conn.QueryContext(ctx, query, args)
}
