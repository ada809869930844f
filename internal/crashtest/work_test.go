package crashtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// demoFeedName is the feed "feedd demo" connects by itself.
const demoFeedName = "Sandbox bakery (demo)"

// Sandbox accounts a test feed may be connected to.
var sandboxAccounts = []string{"sandbox_studio", "sandbox_bakery"}

// tfeed is what the test knows, from acknowledged answers, about a feed.
type tfeed struct {
	id    string
	owner int // worker that changes it; -1: the demo feed (refresh and reads only)
	name  string
	// patchTo is the name of a rename in flight (not acknowledged): after
	// a kill either name is right.
	patchTo string
	// connected: a connect was acknowledged and no disconnect since.
	connected bool
	// floorDB and floorJSON are the most posts the feed was seen with, in
	// its status (post_count) and in its JSON (posts with images). After a
	// restart it must have at least as many.
	floorDB, floorJSON int
	// unsure: a connect or disconnect was in flight at the kill, so the
	// feed's posts and connection are unknown until looked at again.
	unsure bool
	// deleting: a delete was in flight; the feed may or may not exist.
	deleting bool
}

// ledger is the test's view of the data dir's feeds, carried across kills.
type ledger struct {
	mu      sync.Mutex
	feeds   map[string]*tfeed
	pending map[string]int // names of creates in flight → worker
	seq     int
}

func newModel() *ledger {
	return &ledger{feeds: map[string]*tfeed{}, pending: map[string]int{}}
}

func (m *ledger) demo() *tfeed {
	for _, f := range m.feeds {
		if f.owner < 0 {
			return f
		}
	}
	return nil
}

// owned lists worker w's feeds, in id order so that choices replay.
func (m *ledger) owned(w int) []*tfeed {
	var out []*tfeed
	for _, f := range m.feeds {
		if f.owner == w && !f.deleting {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// seen raises a feed's floors from an acknowledged observation.
func (m *ledger) seen(id string, postCount, jsonPosts int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.feeds[id]
	if f == nil || f.unsure || f.deleting {
		return
	}
	f.floorDB = max(f.floorDB, postCount)
	f.floorJSON = max(f.floorJSON, jsonPosts)
}

// status is the admin API's feed status, the fields the test reads.
type status struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	PostCount int    `json:"post_count"`
	LastFetch *struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	} `json:"last_fetch"`
}

// doc is the part of the feed JSON the test reads.
type doc struct {
	ID      string `json:"id"`
	Account *struct {
		Avatar *image `json:"avatar"`
	} `json:"account"`
	Posts []struct {
		ID       string  `json:"id"`
		Images   []image `json:"images"`
		Children []struct {
			Images []image `json:"images"`
		} `json:"children"`
	} `json:"posts"`
	Next *string `json:"next"`
}

type image struct {
	URL    string `json:"url"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// images lists every image the document names.
func (d *doc) images() []image {
	var out []image
	if d.Account != nil && d.Account.Avatar != nil {
		out = append(out, *d.Account.Avatar)
	}
	for _, p := range d.Posts {
		out = append(out, p.Images...)
		for _, c := range p.Children {
			out = append(out, c.Images...)
		}
	}
	return out
}

// httpError is a non-2xx answer the test did not expect.
type httpError struct {
	method, path string
	code         int
	body         string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.code, e.body)
}

// call does one request to feedd, with the admin token for /api/admin.
func (p *proc) call(method, path string, body any, want int) ([]byte, *http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := path
	if !strings.HasPrefix(u, "http") {
		u = p.base + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if strings.Contains(u, "/api/admin/") {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	return p.do(req, want)
}

func (p *proc) do(req *http.Request, want int) ([]byte, *http.Response, error) {
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, resp, err
	}
	if want != 0 && resp.StatusCode != want {
		body := string(b)
		if len(body) > 300 {
			body = body[:300]
		}
		return b, resp, &httpError{req.Method, req.URL.Path, resp.StatusCode, body}
	}
	return b, resp, nil
}

// feeds lists the feeds through the admin API.
func (p *proc) feeds() ([]status, error) {
	b, _, err := p.call(http.MethodGet, "/api/admin/feeds", nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var out struct {
		Feeds []status `json:"feeds"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("feed list: %w", err)
	}
	return out.Feeds, nil
}

// feedDoc reads a feed's JSON, every page of it.
func (p *proc) feedDoc(id string) (*doc, error) {
	var all *doc
	path := "/api/v1/feeds/" + id + "?limit=100"
	for range 20 {
		b, _, err := p.call(http.MethodGet, path, nil, http.StatusOK)
		if err != nil {
			return nil, err
		}
		var d doc
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("feed %s JSON: %w", id, err)
		}
		if all == nil {
			all = &d
		} else {
			all.Posts = append(all.Posts, d.Posts...)
		}
		if d.Next == nil || *d.Next == "" {
			return all, nil
		}
		path = "/api/v1/feeds/" + id + "?limit=100&after=" + url.QueryEscape(*d.Next)
	}
	return nil, fmt.Errorf("feed %s: more than 20 pages", id)
}

var (
	formActionRE = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	hiddenRE     = regexp.MustCompile(`type="hidden" name="([a-z_]+)" value="([^"]*)"`)
)

// connect connects feed id to a sandbox account the way an owner does
// through the admin API: a state, the sandbox's consent page answered
// with Allow, the redirect followed to feedd's callback.
func (p *proc) connect(id, account string) error {
	b, _, err := p.call(http.MethodPost, "/api/admin/feeds/"+id+"/connect", nil, http.StatusOK)
	if err != nil {
		return err
	}
	var c struct {
		AuthorizeURL string `json:"authorize_url"`
	}
	if err := json.Unmarshal(b, &c); err != nil || c.AuthorizeURL == "" {
		return fmt.Errorf("connect %s: no authorize_url in %s", id, b)
	}
	consent, _, err := p.call(http.MethodGet, c.AuthorizeURL, nil, http.StatusOK)
	if err != nil {
		return err
	}
	action := formActionRE.FindSubmatch(consent)
	if action == nil {
		return fmt.Errorf("connect %s: consent page without a form", id)
	}
	form := url.Values{}
	for _, m := range hiddenRE.FindAllSubmatch(consent, -1) {
		form.Set(string(m[1]), html.UnescapeString(string(m[2])))
	}
	form.Set("decision", "allow")
	form.Set("account", account)
	target, err := url.Parse(c.AuthorizeURL)
	if err != nil {
		return err
	}
	if target, err = target.Parse(html.UnescapeString(string(action[1]))); err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, target.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, resp, err := p.do(req, 0)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return fmt.Errorf("connect %s: consent answered %d, not a redirect", id, resp.StatusCode)
	}
	cb, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	if !strings.HasPrefix(cb.String(), p.base+"/auth/instagram/callback") {
		return fmt.Errorf("connect %s: consent redirected elsewhere (%s)", id, cb.Path)
	}
	body, resp, err := p.call(http.MethodGet, cb.String(), nil, 0)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
		return &httpError{"GET", cb.Path, resp.StatusCode, string(body[:min(len(body), 300)])}
	}
	return nil
}

// Operation kinds, also the phases a kill is counted in.
const (
	opCreate     = "create"
	opPatch      = "patch"
	opDelete     = "delete"
	opConnect    = "connect"
	opDisconnect = "disconnect"
	opRefresh    = "refresh"
	opRead       = "read"
)

// worker is one concurrent client of an iteration.
type worker struct {
	id      int
	iter    int
	rng     *rand.Rand
	p       *proc
	m       *ledger
	current atomic.Value // string: the op in flight, "" between ops
	killing *atomic.Bool
	ops     map[string]int
}

// maxOwned bounds each worker's feeds, so a long run's data dir stays small.
const maxOwned = 2

// run does operations until the process is killed. It returns the first
// failure that the kill does not explain.
func (w *worker) run() error {
	w.ops = map[string]int{}
	for !w.killing.Load() {
		// A little think time between requests: a client, not a flood,
		// and more varied states for the kill to land in.
		time.Sleep(time.Duration(w.rng.IntN(100)) * time.Millisecond)
		if w.killing.Load() {
			break
		}
		op, err := w.step()
		if op != "" {
			w.ops[op]++
		}
		w.current.Store("")
		if err != nil {
			if w.killing.Load() {
				return nil // the kill cut it short
			}
			return fmt.Errorf("worker %d, %s: %w", w.id, op, err)
		}
	}
	return nil
}

func (w *worker) begin(op string) string {
	w.current.Store(op)
	return op
}

// step picks one operation by weight among those possible and does it.
func (w *worker) step() (string, error) {
	m := w.m
	m.mu.Lock()
	own := m.owned(w.id)
	var unconnected, connected []*tfeed
	for _, f := range own {
		if f.unsure {
			continue
		}
		if f.connected {
			connected = append(connected, f)
		} else if f.floorDB == 0 {
			unconnected = append(unconnected, f)
		}
	}
	refreshable := append([]*tfeed(nil), connected...)
	if d := m.demo(); d != nil {
		refreshable = append(refreshable, d)
	}
	all := append([]*tfeed(nil), own...)
	if d := m.demo(); d != nil {
		all = append(all, d)
	}
	type choice struct {
		op     string
		weight int
	}
	var choices []choice
	add := func(op string, weight int, ok bool) {
		if ok {
			choices = append(choices, choice{op, weight})
		}
	}
	// Deletes and disconnects are rarer than what builds feeds up, so
	// that feeds with posts live through several kills.
	add(opCreate, 3, len(own) < maxOwned)
	add(opPatch, 2, len(own) > 0)
	add(opConnect, 3, len(unconnected) > 0)
	add(opRefresh, 5, len(refreshable) > 0)
	add(opDisconnect, 1, len(connected) > 0)
	add(opDelete, 1, len(own) == maxOwned)
	add(opRead, 4, true)
	total := 0
	for _, c := range choices {
		total += c.weight
	}
	r := w.rng.IntN(total)
	var op string
	for _, c := range choices {
		if r < c.weight {
			op = c.op
			break
		}
		r -= c.weight
	}
	pick := func(fs []*tfeed) *tfeed { return fs[w.rng.IntN(len(fs))] }

	switch op {
	case opCreate:
		m.seq++
		name := fmt.Sprintf("crash-%d-w%d-%d", w.iter, w.id, m.seq)
		m.pending[name] = w.id
		m.mu.Unlock()
		w.begin(op)
		b, _, err := w.p.call(http.MethodPost, "/api/admin/feeds", map[string]any{"name": name, "allowed_origins": []string{"https://crash.example"}}, http.StatusCreated)
		if err != nil {
			return op, err
		}
		var st status
		if err := json.Unmarshal(b, &st); err != nil {
			return op, err
		}
		m.mu.Lock()
		delete(m.pending, name)
		m.feeds[st.ID] = &tfeed{id: st.ID, owner: w.id, name: st.Name}
		m.mu.Unlock()
		return op, nil

	case opPatch:
		f := pick(own)
		m.seq++
		name := fmt.Sprintf("crash-%d-w%d-%d", w.iter, w.id, m.seq)
		f.patchTo = name
		id := f.id
		m.mu.Unlock()
		w.begin(op)
		b, _, err := w.p.call(http.MethodPatch, "/api/admin/feeds/"+id, map[string]any{"name": name}, http.StatusOK)
		if err != nil {
			return op, err
		}
		var st status
		if err := json.Unmarshal(b, &st); err != nil {
			return op, err
		}
		m.mu.Lock()
		f.name, f.patchTo = st.Name, ""
		m.mu.Unlock()
		return op, nil

	case opDelete:
		f := pick(own)
		f.deleting = true
		id := f.id
		m.mu.Unlock()
		w.begin(op)
		if _, _, err := w.p.call(http.MethodDelete, "/api/admin/feeds/"+id, nil, http.StatusNoContent); err != nil {
			return op, err
		}
		m.mu.Lock()
		delete(m.feeds, id)
		m.mu.Unlock()
		return op, nil

	case opConnect:
		f := pick(unconnected)
		f.unsure = true
		id := f.id
		account := sandboxAccounts[w.rng.IntN(len(sandboxAccounts))]
		m.mu.Unlock()
		w.begin(op)
		if err := w.p.connect(id, account); err != nil {
			return op, err
		}
		m.mu.Lock()
		f.connected, f.unsure = true, false
		m.mu.Unlock()
		return op, nil

	case opDisconnect:
		f := pick(connected)
		f.unsure = true
		id := f.id
		m.mu.Unlock()
		w.begin(op)
		if _, _, err := w.p.call(http.MethodDelete, "/api/admin/feeds/"+id+"/token", nil, http.StatusOK); err != nil {
			return op, err
		}
		m.mu.Lock()
		f.connected, f.unsure, f.floorDB, f.floorJSON = false, false, 0, 0
		m.mu.Unlock()
		return op, nil

	case opRefresh:
		f := pick(refreshable)
		id := f.id
		m.mu.Unlock()
		w.begin(op)
		b, _, err := w.p.call(http.MethodPost, "/api/admin/feeds/"+id+"/refresh", nil, http.StatusOK)
		if err != nil {
			return op, err
		}
		var st status
		if err := json.Unmarshal(b, &st); err != nil {
			return op, err
		}
		m.seen(id, st.PostCount, 0)
		return op, nil

	default: // opRead
		var id string
		if len(all) > 0 {
			id = pick(all).id
		}
		haveDemo := m.demo() != nil
		m.mu.Unlock()
		w.begin(op)
		if !haveDemo {
			// The demo creates its feed after it starts listening.
			return op, w.findDemo()
		}
		return op, w.read(id)
	}
}

// findDemo adopts the demo's own feed into the model once it exists.
func (w *worker) findDemo() error {
	fs, err := w.p.feeds()
	if err != nil {
		return err
	}
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	for _, f := range fs {
		if f.Name == demoFeedName && w.m.demo() == nil {
			w.m.feeds[f.ID] = &tfeed{id: f.ID, owner: -1, name: f.Name, connected: true}
		}
	}
	return nil
}

// read is a visitor: the feed's JSON, its fragment and a few pictures.
func (w *worker) read(id string) error {
	d, err := w.p.feedDoc(id)
	if err != nil {
		return err
	}
	if _, _, err := w.p.call(http.MethodGet, "/feeds/"+id+".html", nil, http.StatusOK); err != nil {
		return err
	}
	imgs := d.images()
	for range min(3, len(imgs)) {
		im := imgs[w.rng.IntN(len(imgs))]
		if _, _, err := w.p.call(http.MethodGet, im.URL, nil, http.StatusOK); err != nil {
			return err
		}
	}
	st, _, err := w.p.call(http.MethodGet, "/api/admin/feeds/"+id, nil, http.StatusOK)
	if err != nil {
		return err
	}
	var s status
	if err := json.Unmarshal(st, &s); err != nil {
		return err
	}
	w.m.seen(id, s.PostCount, len(d.Posts))
	return nil
}
