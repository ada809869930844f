package crashtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"image/jpeg"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite"

	"github.com/feedd/feedd/internal/media"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/store"
)

// mediaNameRE is a stored image's name: "<shard>/<32 hex of
// sha256>-<width>.<jpg|avif|webp>".
var mediaNameRE = regexp.MustCompile(`^([0-9a-f]{2})/([0-9a-f]{32})-([1-9][0-9]*)\.(jpg|avif|webp)$`)

// tempPrefix marks a media file being written (internal/media).
const tempPrefix = ".tmp-"

// mediaDir is the snapshot of DIR/media taken with the process dead.
type mediaDir struct {
	files   []string // stored-file names
	temps   []string // half-written files (temp names)
	others  []string // anything else
	orphans []string // stored files no media row names
}

// deadState is what the checks with the process dead found.
type deadState struct {
	feeds map[string]model.Feed
	media mediaDir
	// pendingFormats counts the images still lacking the formats the
	// background encoder makes: work the kill interrupted or left.
	pendingFormats int
}

// checker runs the checks and remembers the files it has verified, so a
// long run hashes and decodes each picture once.
type checker struct {
	dir      string
	hashed   map[string]int64 // file → size whose bytes matched the name
	decoded  map[string]bool  // URL → decoded and sized as the JSON says
	logger   *slog.Logger
	served   int // pictures fetched and verified
	floors   int // post counts compared with a floor above zero
	problems []string
}

func newChecker(dir string) *checker {
	return &checker{dir: dir, hashed: map[string]int64{}, decoded: map[string]bool{}, logger: slog.New(slog.DiscardHandler)}
}

func (c *checker) fail(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// checkDead checks the data dir with the process dead: (1) the database
// passes integrity_check and foreign_key_check; (2) every stored token
// decrypts; (3) no feed has fewer posts than the test saw it with; and the
// media dir holds no stored file whose bytes are not its name's.
func (c *checker) checkDead(ctx context.Context, m *ledger) (*deadState, error) {
	dbPath := filepath.Join(c.dir, "feedd.db")
	if _, err := os.Stat(dbPath); errors.Is(err, fs.ErrNotExist) {
		return &deadState{feeds: map[string]model.Feed{}}, nil // killed before the database was made
	}
	if err := c.integrity(ctx, dbPath); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(c.dir, secret.KeyFileName)); err != nil {
		c.fail("database exists but the key file does not: %v", err)
		return &deadState{feeds: map[string]model.Feed{}}, nil
	}
	key, created, err := secret.LoadOrCreateKey(c.dir, c.logger)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	if created {
		c.fail("secret key had to be created: the data dir lost its key")
	}
	box, err := secret.New(key)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, dbPath, box, store.Options{})
	if err != nil {
		c.fail("store does not open after the kill: %v", err)
		return &deadState{feeds: map[string]model.Feed{}}, nil
	}
	defer st.Close()

	feeds, err := st.Feeds(ctx)
	if err != nil {
		return nil, err
	}
	ds := &deadState{feeds: map[string]model.Feed{}}
	for _, f := range feeds {
		ds.feeds[f.ID] = f
		_, err := st.Token(ctx, f.ID)
		switch {
		case err == nil:
		case errors.Is(err, model.ErrNotConnected):
			if f.Status == model.StatusActive {
				c.fail("feed %s is active but has no token", f.ID)
			}
			if f.Token != nil {
				c.fail("feed %s: token metadata without a token", f.ID)
			}
		default:
			c.fail("feed %s: stored token does not open: %v", f.ID, err)
		}
	}

	// (3) posts, from the database itself.
	m.mu.Lock()
	for _, tf := range m.feeds {
		f, ok := ds.feeds[tf.id]
		if !ok || tf.unsure || tf.deleting {
			continue
		}
		if f.PostCount < tf.floorDB {
			c.fail("feed %s lost posts: %d stored after the kill, %d acknowledged before", tf.id, f.PostCount, tf.floorDB)
		}
	}
	m.mu.Unlock()

	ds.media, err = c.scanMedia()
	if err != nil {
		return nil, err
	}
	refs, err := st.ReferencedFiles(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range ds.media.files {
		if _, ok := refs[f]; !ok {
			ds.media.orphans = append(ds.media.orphans, f)
		}
	}
	if ds.pendingFormats, err = st.CountPendingFormats(ctx, crashFormats, media.DefaultMaxFormatFailures); err != nil {
		return nil, err
	}
	return ds, nil
}

// integrity runs PRAGMA integrity_check and foreign_key_check.
func (c *checker) integrity(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		c.fail("integrity_check: %v", err)
		return nil
	}
	var res []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return err
		}
		res = append(res, s)
	}
	rows.Close()
	if len(res) != 1 || res[0] != "ok" {
		c.fail("integrity_check: %s", strings.Join(res, "; "))
	}
	rows, err = db.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		c.fail("foreign_key_check: %v", err)
		return nil
	}
	defer rows.Close()
	if rows.Next() {
		var table string
		var rowid sql.NullInt64
		var parent string
		var fkid int
		_ = rows.Scan(&table, &rowid, &parent, &fkid)
		c.fail("foreign_key_check: row %d of %s points to a missing %s row", rowid.Int64, table, parent)
	}
	return rows.Err()
}

// scanMedia lists the media dir and checks that every stored file's bytes
// hash to its name: a file under a final name is never a partial write.
func (c *checker) scanMedia() (mediaDir, error) {
	var md mediaDir
	root := filepath.Join(c.dir, "media")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		switch {
		case mediaNameRE.MatchString(rel):
			md.files = append(md.files, rel)
			info, err := d.Info()
			if err != nil {
				return err
			}
			if c.hashed[rel] == info.Size() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			if want := mediaNameRE.FindStringSubmatch(rel)[2]; hex.EncodeToString(sum[:16]) != want {
				c.fail("media file %s: content does not match its name (%d bytes): a partial write under a final name", rel, len(b))
				return nil
			}
			c.hashed[rel] = info.Size()
		case strings.HasPrefix(d.Name(), tempPrefix):
			md.temps = append(md.temps, rel)
		default:
			md.others = append(md.others, rel)
		}
		return nil
	})
	return md, err
}

// checkLive checks the restarted server before any new work: acknowledged
// admin changes are there, no feed lost posts, every picture a feed names
// is served whole, the orphans the kill left were swept at start and no
// half-written file is served.
func (c *checker) checkLive(ctx context.Context, p *proc, m *ledger, ds *deadState) error {
	list, err := p.feeds()
	if err != nil {
		return fmt.Errorf("list feeds after restart: %w", err)
	}
	live := map[string]status{}
	for _, f := range list {
		live[f.ID] = f
	}

	// The ledger against the server: reconcile what a kill left unsure.
	m.mu.Lock()
	for name, w := range m.pending {
		for _, f := range list {
			if f.Name == name {
				m.feeds[f.ID] = &tfeed{id: f.ID, owner: w, name: name, unsure: true}
			}
		}
		delete(m.pending, name)
	}
	for id, tf := range m.feeds {
		f, ok := live[id]
		switch {
		case tf.deleting && !ok:
			delete(m.feeds, id)
			continue
		case !ok:
			c.fail("feed %s (%q) was acknowledged but is gone after the restart", id, tf.name)
			delete(m.feeds, id)
			continue
		}
		tf.deleting = false
		if f.Name != tf.name && (tf.patchTo == "" || f.Name != tf.patchTo) {
			c.fail("feed %s: name %q after the restart, acknowledged %q", id, f.Name, tf.name)
		}
		tf.name, tf.patchTo = f.Name, ""
		if tf.unsure {
			// A connect or disconnect was cut short: start over from what is there.
			tf.connected = model.Status(f.Status) != model.StatusNotConnected
			tf.floorDB, tf.floorJSON = 0, 0
			tf.unsure = false
		}
		if tf.connected && tf.owner >= 0 && model.Status(f.Status) != model.StatusActive {
			c.fail("feed %s: acknowledged connected, status %q after the restart", id, f.Status)
		}
	}
	known := map[string]bool{}
	for id := range m.feeds {
		known[id] = true
	}
	for _, f := range list {
		switch {
		case known[f.ID]:
		case f.Name == demoFeedName && m.demo() == nil:
			m.feeds[f.ID] = &tfeed{id: f.ID, owner: -1, name: f.Name, connected: true}
		default:
			c.fail("feed %s (%q) exists but the test never created it", f.ID, f.Name)
		}
	}
	type want struct {
		id                 string
		floorDB, floorJSON int
	}
	var feeds []want
	for _, tf := range m.feeds {
		feeds = append(feeds, want{tf.id, tf.floorDB, tf.floorJSON})
	}
	m.mu.Unlock()
	sort.Slice(feeds, func(i, j int) bool { return feeds[i].id < feeds[j].id })

	// (3) and (4): posts kept, every picture served whole.
	for _, w := range feeds {
		if w.floorDB > 0 || w.floorJSON > 0 {
			c.floors++
		}
		if live[w.id].PostCount < w.floorDB {
			c.fail("feed %s: post_count %d after the restart, %d before", w.id, live[w.id].PostCount, w.floorDB)
		}
		d, err := p.feedDoc(w.id)
		if err != nil {
			return fmt.Errorf("feed JSON after restart: %w", err)
		}
		if len(d.Posts) < w.floorJSON {
			c.fail("feed %s: %d posts served after the restart, %d before", w.id, len(d.Posts), w.floorJSON)
		}
		m.seen(w.id, live[w.id].PostCount, len(d.Posts))
		if _, _, err := p.call(http.MethodGet, "/feeds/"+w.id+".html", nil, http.StatusOK); err != nil {
			c.fail("fragment after restart: %v", err)
		}
		for _, im := range d.images() {
			if err := c.picture(p, im); err != nil {
				// A poll running meanwhile may have replaced the post:
				// only a picture the feed still names counts.
				if again, derr := p.feedDoc(w.id); derr == nil && names(again, im.URL) {
					c.fail("feed %s: %v", w.id, err)
				}
			}
		}
	}

	// Orphans the kill left must be gone: the start-up sweep removes every
	// file no media row names. A poll since the restart may have stored
	// the same picture again (names are content hashes); then a row names it.
	if len(ds.media.orphans) > 0 {
		if err := c.orphansSwept(ctx, ds.media.orphans); err != nil {
			return err
		}
	}
	// Half-written files are never served, whatever their age.
	for _, t := range ds.media.temps {
		_, resp, err := p.call(http.MethodGet, "/media/"+t, nil, 0)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusNotFound {
			c.fail("temp file %s answered %d, want 404", t, resp.StatusCode)
		}
	}
	return nil
}

func names(d *doc, u string) bool {
	for _, im := range d.images() {
		if im.URL == u {
			return true
		}
	}
	return false
}

// picture fetches one image and checks it is a complete JPEG of the size
// the JSON says, with the bytes its name promises.
func (c *checker) picture(p *proc, im image) error {
	b, resp, err := p.call(http.MethodGet, im.URL, nil, http.StatusOK)
	if err != nil {
		return err
	}
	c.served++
	if ct := resp.Header.Get("Content-Type"); ct != "image/jpeg" {
		return fmt.Errorf("%s: Content-Type %q", im.URL, ct)
	}
	if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(b)) {
		return fmt.Errorf("%s: Content-Length %q, body %d bytes", im.URL, cl, len(b))
	}
	rel := strings.TrimPrefix(resp.Request.URL.Path, "/media/")
	mm := mediaNameRE.FindStringSubmatch(rel)
	if mm == nil {
		return fmt.Errorf("%s: not a stored file's name", im.URL)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:16]) != mm[2] {
		return fmt.Errorf("%s: %d bytes that do not match the name (partial?)", im.URL, len(b))
	}
	if c.decoded[im.URL] {
		return nil
	}
	cfg, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s: not a decodable JPEG: %v", im.URL, err)
	}
	if r := cfg.Bounds(); r.Dx() != im.Width || r.Dy() != im.Height {
		return fmt.Errorf("%s: %dx%d, the JSON says %dx%d", im.URL, r.Dx(), r.Dy(), im.Width, im.Height)
	}
	c.decoded[im.URL] = true
	return nil
}

// orphansSwept checks, on a read-only connection to the live database,
// that every orphan is gone or named by a media row again.
func (c *checker) orphansSwept(ctx context.Context, orphans []string) error {
	dsn, err := store.DSN(filepath.Join(c.dir, "feedd.db"), true)
	if err != nil {
		return err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	left := orphans
	deadline := time.Now().Add(10 * time.Second)
	for {
		var still []string
		for _, f := range left {
			if _, err := os.Stat(filepath.Join(c.dir, "media", filepath.FromSlash(f))); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			var n int
			err := db.QueryRowContext(ctx, `SELECT count(*) FROM media, json_each(media.variants) v WHERE json_extract(v.value, '$.file') = ?`, f).Scan(&n)
			if err != nil {
				return err
			}
			if n == 0 {
				still = append(still, f)
			}
		}
		if len(still) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			c.fail("%d orphaned media files not swept at start, e.g. %s", len(still), still[0])
			return nil
		}
		left = still
		time.Sleep(200 * time.Millisecond)
	}
}
