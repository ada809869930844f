package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// ErrNotEmpty reports a copy target that already holds tables.
var ErrNotEmpty = errors.New("store: the target database is not empty; copy into a new, empty database")

// TableCount is how many rows of one table a copy moved.
type TableCount struct {
	Table string
	Rows  int64
}

// CopyToPostgres copies every table of src, a SQLite store opened at this
// build's schema, into the empty PostgreSQL database at dsn: the schema and
// all rows in one transaction, so a failed copy leaves the target as empty
// as it was. Sealed tokens are copied as they are: the target must be
// opened with the key src was opened with (its key check row is copied
// too). It refuses a target that holds any table (ErrNotEmpty).
func CopyToPostgres(ctx context.Context, src *Store, dsn string) ([]TableCount, error) {
	if src.d != sqliteDialect {
		return nil, errors.New("store: the copy source must be a SQLite store")
	}
	if err := ValidateURL(dsn); err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: database URL: %w", err)
	}
	db := sql.OpenDB(rebindConnector{stdlib.GetConnector(*cfg)})
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("store: connect to %s: %w", RedactURL(dsn), err)
	}
	tables, err := src.copyOrder(ctx)
	if err != nil {
		return nil, err
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: begin: %w", err)
	}
	defer tx.Rollback()
	// A feedd starting on the target meanwhile waits for the copy.
	if _, err := tx.ExecContext(ctx, postgresDialect.exclusiveLock); err != nil {
		return nil, fmt.Errorf("store: lock: %w", err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()`).Scan(&n); err != nil {
		return nil, fmt.Errorf("store: inspect target: %w", err)
	}
	if n > 0 {
		return nil, fmt.Errorf("%w (%s holds %d tables)", ErrNotEmpty, RedactURL(dsn), n)
	}
	if _, err := applyMigrations(ctx, tx, postgresDialect, src.now()); err != nil {
		return nil, err
	}
	var out []TableCount
	for _, t := range tables {
		rows, err := copyTable(ctx, src.r, tx, t)
		if err != nil {
			return nil, fmt.Errorf("store: copy table %s: %w", t, err)
		}
		out = append(out, TableCount{Table: t, Rows: rows})
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("store: commit: %w", err)
	}
	return out, nil
}

// copyOrder lists the source's tables (but schema_migrations, which the
// target writes for itself), each after the tables its foreign keys name.
func (s *Store) copyOrder(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT m.name, coalesce(f."table", '') FROM sqlite_master m
		LEFT JOIN pragma_foreign_key_list(m.name) f
		WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name != 'schema_migrations' ORDER BY m.name`)
	if err != nil {
		return nil, fmt.Errorf("store: list tables: %w", err)
	}
	defer rows.Close()
	parents := map[string][]string{}
	var names []string
	for rows.Next() {
		var t, parent string
		if err := rows.Scan(&t, &parent); err != nil {
			return nil, fmt.Errorf("store: list tables: %w", err)
		}
		if _, ok := parents[t]; !ok {
			names = append(names, t)
			parents[t] = nil
		}
		if parent != "" && parent != t {
			parents[t] = append(parents[t], parent)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list tables: %w", err)
	}
	var order []string
	done := map[string]bool{}
	var visit func(t string, depth int) error
	visit = func(t string, depth int) error {
		if done[t] {
			return nil
		}
		if depth > len(names) {
			return fmt.Errorf("store: foreign keys of %s form a cycle", t)
		}
		for _, p := range parents[t] {
			if err := visit(p, depth+1); err != nil {
				return err
			}
		}
		done[t] = true
		order = append(order, t)
		return nil
	}
	for _, t := range names {
		if err := visit(t, 0); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// copyTable streams one table's rows from the SQLite read pool into tx and
// moves the table's identity sequences past the copied ids.
func copyTable(ctx context.Context, src *sql.DB, tx *sql.Tx, table string) (int64, error) {
	cols, err := tableColumns(ctx, src, table)
	if err != nil {
		return 0, err
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = `"` + c + `"`
	}
	list := strings.Join(quoted, ", ")
	ins, err := tx.PrepareContext(ctx, `INSERT INTO "`+table+`" (`+list+`) VALUES (?`+strings.Repeat(", ?", len(cols)-1)+`)`)
	if err != nil {
		return 0, err
	}
	defer ins.Close()
	rows, err := src.QueryContext(ctx, `SELECT `+list+` FROM "`+table+`"`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		if _, err := ins.ExecContext(ctx, vals...); err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	for _, c := range cols {
		var seq sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT pg_get_serial_sequence(?, ?)`, table, c).Scan(&seq); err != nil {
			return n, err
		}
		if seq.Valid && n > 0 {
			if _, err := tx.ExecContext(ctx, `SELECT setval(?::regclass, (SELECT max("`+c+`") FROM "`+table+`"))`, seq.String); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// tableColumns lists a SQLite table's columns. Their names come from the
// schema this build created, never from input.
func tableColumns(ctx context.Context, db *sql.DB, table string) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT name FROM pragma_table_info(?) ORDER BY cid`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		if strings.ContainsAny(c, `"`) {
			return nil, fmt.Errorf("unexpected column name %q", c)
		}
		cols = append(cols, c)
	}
	if len(cols) == 0 {
		return nil, errors.New("no columns")
	}
	return cols, rows.Err()
}
