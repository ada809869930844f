package crashtest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/store"
)

// crashFormats are the formats the demo runs with (see startDemo).
var crashFormats = []string{model.FormatWebP}

// formatsWait bounds the wait for the background encoder to finish every
// image after the last restart.
const formatsWait = 15 * time.Minute

// formatsDone waits, on a read-only connection to the live database, until
// no image lacks a format, then checks that every image with JPEGs has
// each format at every JPEG width, in files that exist.
func (c *checker) formatsDone(ctx context.Context) error {
	dsn, err := store.DSN(filepath.Join(c.dir, "feedd.db"), true)
	if err != nil {
		return err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(formatsWait)
	for {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM media WHERE (',' || formats || ',') NOT LIKE '%,webp,%'`).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			c.fail("%d images still lack WebP %s after the last restart", n, formatsWait)
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	rows, err := db.QueryContext(ctx, `SELECT key, variants FROM media`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var key, raw string
		if err := rows.Scan(&key, &raw); err != nil {
			return err
		}
		var vs []model.Variant
		if err := json.Unmarshal([]byte(raw), &vs); err != nil {
			return fmt.Errorf("media %s: %w", key, err)
		}
		widths := map[string]map[int]bool{}
		for _, v := range vs {
			if widths[v.Format] == nil {
				widths[v.Format] = map[int]bool{}
			}
			widths[v.Format][v.Width] = true
			if _, err := os.Stat(filepath.Join(c.dir, "media", filepath.FromSlash(v.File))); err != nil {
				c.fail("media %s: %s named but not stored: %v", key, v.File, err)
			}
		}
		for w := range widths[""] {
			if !widths[model.FormatWebP][w] && mediaNameRE.MatchString(jpegOf(vs, w)) {
				c.fail("media %s: no WebP %d px beside its JPEG", key, w)
			}
		}
	}
	return rows.Err()
}

// jpegOf is the file of the JPEG w wide among vs.
func jpegOf(vs []model.Variant, w int) string {
	for _, v := range vs {
		if v.Format == "" && v.Width == w {
			return v.File
		}
	}
	return ""
}
