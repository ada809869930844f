package feed

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

// addSource adds a sandbox account to the env's feed as a further source,
// with a fresh long-lived token, as the connection service does.
func (e *env) addSource(account string) model.Source {
	e.t.Helper()
	a, err := e.sb.Account(account)
	if err != nil {
		e.t.Fatal(err)
	}
	obtained := e.clock.Now().Add(-48 * time.Hour)
	tok := e.sb.MintLongLivedToken(account, obtained)
	src, err := e.st.AddSource(context.Background(), e.id, e.feed().Generation, "",
		model.Account{AppUserID: a.ID, IGUserID: a.UserID, Username: a.Username, AccountType: a.AccountType},
		model.Token{AccessToken: tok, TokenInfo: model.TokenInfo{ObtainedAt: obtained, ExpiresAt: obtained.Add(sandbox.LongTokenTTL)}})
	if err != nil {
		e.t.Fatal(err)
	}
	return src
}

// mediaCallsBy counts the Graph media calls made for one account.
func (e *env) mediaCallsBy(account string) int {
	n := 0
	for _, c := range e.sb.Calls() {
		if c.Endpoint == sandbox.EndpointMedia && c.Account == account {
			n++
		}
	}
	return n
}

func usernames(d Doc) map[string]int {
	out := map[string]int{}
	for _, p := range d.Posts {
		out[p.Username]++
	}
	return out
}

// Two accounts in one feed: one Graph call each, their posts merged newest
// first, each post naming its account, the header the chosen account.
func TestSourcesMergedNewestFirstEachPostNamingItsAccount(t *testing.T) {
	env := newSandboxEnv(t, sandbox.AccountCreator, true)
	src := env.addSource(sandbox.AccountBusiness)
	if err := env.fetchNow(); err != nil {
		t.Fatal(err)
	}
	if c, b := env.mediaCallsBy(sandbox.AccountCreator), env.mediaCallsBy(sandbox.AccountBusiness); c != 1 || b != 1 {
		t.Fatalf("media calls: %d for the main account, %d for the source; want 1 each", c, b)
	}
	d := env.sandboxDoc(t)
	names := usernames(d)
	if names[sandbox.AccountCreator] == 0 || names[sandbox.AccountBusiness] == 0 || len(names) != 2 {
		t.Fatalf("posts by account: %v; want both accounts, every post named", names)
	}
	for i := 1; i < len(d.Posts); i++ {
		if d.Posts[i].Timestamp.After(d.Posts[i-1].Timestamp) {
			t.Fatalf("post %d (%s, @%s) is newer than post %d (%s)", i, d.Posts[i].Timestamp, d.Posts[i].Username, i-1, d.Posts[i-1].Timestamp)
		}
	}
	if d.Account == nil || d.Account.Username != sandbox.AccountCreator {
		t.Fatalf("header account %+v, want the main account", d.Account)
	}
	if err := env.st.SetHeaderSource(context.Background(), env.id, src.ID); err != nil {
		t.Fatal(err)
	}
	env.svc.Invalidate(env.id)
	if d := env.sandboxDoc(t); d.Account == nil || d.Account.Username != sandbox.AccountBusiness {
		t.Fatalf("header account %+v after choosing the source", d.Account)
	}
}

// A source whose token Instagram refuses needs reconnecting and keeps its
// last posts; the main account goes on being polled and served.
func TestRevokedSourceLeavesTheRestOfTheFeedServed(t *testing.T) {
	env := newSandboxEnv(t, sandbox.AccountCreator, true)
	ctx := context.Background()
	src := env.addSource(sandbox.AccountBusiness)
	if err := env.fetchNow(); err != nil {
		t.Fatal(err)
	}
	before := usernames(env.sandboxDoc(t))

	env.sb.RevokeTokens(sandbox.AccountBusiness)
	env.clock.Add(16 * time.Minute)
	env.svc.pollDue(ctx)
	srcs, err := env.st.Sources(ctx, env.id)
	if err != nil {
		t.Fatal(err)
	}
	if srcs[0].Status != model.StatusActive || srcs[1].Status != model.StatusNeedsReauth {
		t.Fatalf("after the revocation: main %s, source %s", srcs[0].Status, srcs[1].Status)
	}
	if w, _ := model.Worst(srcs); w.ID != src.ID {
		t.Fatalf("the source needing the owner is %q, want %q", w.ID, src.ID)
	}
	d := env.sandboxDoc(t)
	if got := usernames(d); got[sandbox.AccountBusiness] != before[sandbox.AccountBusiness] || got[sandbox.AccountCreator] == 0 {
		t.Fatalf("posts by account after the revocation: %v, before %v", got, before)
	}
	if d.Stale {
		t.Fatal("the feed is stale while its main account polls fine")
	}

	// The next round polls the main account only.
	c, b := env.mediaCallsBy(sandbox.AccountCreator), env.mediaCallsBy(sandbox.AccountBusiness)
	env.clock.Add(16 * time.Minute)
	env.svc.pollDue(ctx)
	if env.mediaCallsBy(sandbox.AccountCreator) != c+1 || env.mediaCallsBy(sandbox.AccountBusiness) != b {
		t.Fatalf("second round: main %d→%d, revoked source %d→%d media calls",
			c, env.mediaCallsBy(sandbox.AccountCreator), b, env.mediaCallsBy(sandbox.AccountBusiness))
	}

	// The main account revoked too, the source reconnected: the source
	// alone is polled.
	env.sb.RevokeTokens(sandbox.AccountCreator)
	env.clock.Add(16 * time.Minute)
	env.svc.pollDue(ctx)
	if f := env.feed(); f.Status != model.StatusNeedsReauth {
		t.Fatalf("main status %s", f.Status)
	}
	env.addSource(sandbox.AccountBusiness)
	b = env.mediaCallsBy(sandbox.AccountBusiness)
	env.clock.Add(time.Hour)
	env.svc.pollDue(ctx)
	if env.mediaCallsBy(sandbox.AccountBusiness) != b+1 {
		t.Fatal("the reconnected source was not polled while the main account needs reconnecting")
	}
}

// Removing a source drops its posts and the image files only they used.
func TestRemovedSourceDropsItsPostsAndFiles(t *testing.T) {
	env := newSandboxEnv(t, sandbox.AccountCreator, true)
	ctx := context.Background()
	src := env.addSource(sandbox.AccountBusiness)
	if err := env.fetchNow(); err != nil {
		t.Fatal(err)
	}
	d := env.sandboxDoc(t)
	var theirs []string
	for _, p := range d.Posts {
		if p.Username == sandbox.AccountBusiness {
			for _, im := range p.Images {
				theirs = append(theirs, im.URL)
			}
		}
	}
	if len(theirs) == 0 {
		t.Fatal("the source shows no images")
	}
	files, err := env.st.RemoveSource(ctx, env.id, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.media.Remove(files); err != nil {
		t.Fatal(err)
	}
	env.svc.Invalidate(env.id)
	if got := usernames(env.sandboxDoc(t)); got[sandbox.AccountBusiness] != 0 || got[sandbox.AccountCreator] == 0 {
		t.Fatalf("posts by account after the removal: %v", got)
	}
	if len(files) < len(theirs) {
		t.Fatalf("%d files to delete, the source's posts showed %d images", len(files), len(theirs))
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(env.mediaDir, f)); !os.IsNotExist(err) {
			t.Fatalf("file %s of the removed source is still on disk: %v", f, err)
		}
	}
}

// An account added while a poll runs is polled by that poll: the add's
// first fetch joins it and must see the new account's posts.
func TestSourceAddedDuringAPollIsPolledByIt(t *testing.T) {
	env := newSandboxEnv(t, sandbox.AccountCreator, true)
	gate := make(chan struct{})
	env.conns.setGate(gate)
	done := make(chan error, 1)
	go func() { done <- env.fetchNow() }()
	waitFor(t, func() bool { return env.conns.entered.Load() > 0 })
	env.addSource(sandbox.AccountBusiness)
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b := env.mediaCallsBy(sandbox.AccountBusiness); b != 1 {
		t.Fatalf("%d media calls for the account added during the poll, want 1", b)
	}
	if got := usernamesAll(t, env); got[sandbox.AccountBusiness] == 0 {
		t.Fatalf("posts by account: %v", got)
	}
}

// usernamesAll counts the posts of every page by account.
func usernamesAll(t *testing.T, env *env) map[string]int {
	t.Helper()
	out := map[string]int{}
	after := ""
	for range 10 {
		q, err := NewQuery(MaxLimit, after, nil)
		if err != nil {
			t.Fatal(err)
		}
		en, err := env.svc.Entry(context.Background(), env.id, q)
		if err != nil {
			t.Fatal(err)
		}
		var d Doc
		if err := json.Unmarshal(en.JSON, &d); err != nil {
			t.Fatal(err)
		}
		for _, p := range d.Posts {
			out[p.Username]++
		}
		if d.Next == nil {
			break
		}
		after = *d.Next
	}
	return out
}
