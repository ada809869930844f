package demo

// A feed with a second Instagram account, added and watched through the
// setup page in a real browser: the accounts list, a revoked account's
// banner and the removal confirmation pass axe-core at desktop and phone
// width, in light and dark mode.

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/feedd/feedd/internal/sandbox"
)

func TestBrowserSecondAccountOnTheSetupPage(t *testing.T) {
	base, sb, stop := startDemoSandbox(t, "")
	defer stop()
	ctx, _ := browser(t, 1280, 900)
	feedURL := signIn(t, ctx, base)
	navigate(t, ctx, feedURL)
	waitFor(t, ctx, "the feed page's accounts", `document.querySelectorAll('[data-source]').length == 1 && document.readyState == 'complete'`, `document.body.innerText.slice(0, 300)`)
	run(t, ctx, `[...document.querySelectorAll('#sources form button')].find(b => b.textContent.includes('Add another account')).click()`)
	waitFor(t, ctx, "the sandbox consent page", `location.pathname.startsWith('`+SandboxPath+`/') && document.querySelector('input[value="`+sandbox.AccountCreator+`"]')`, `location.href`)
	run(t, ctx, `document.querySelector('input[value="`+sandbox.AccountCreator+`"]').checked = true; document.querySelector('button[value="allow"]').click()`)
	waitFor(t, ctx, "the feed page with two accounts",
		`/^\/setup\/feeds\/[a-z0-9]+$/.test(location.pathname) && document.querySelectorAll('[data-source]').length == 2 && document.readyState == 'complete'`,
		`location.href + ' ' + document.body.innerText.slice(0, 400)`)

	// Both accounts' posts reach the feed's JSON, each naming its account.
	id := feedURL[len(feedURL)-10:]
	deadline := time.Now().Add(30 * time.Second)
	for got := usernamesIn(t, base, id); got != sandbox.AccountBusiness+" "+sandbox.AccountCreator; got = usernamesIn(t, base, id) {
		if time.Now().After(deadline) {
			for _, c := range sb.Calls() {
				if c.Account == sandbox.AccountCreator {
					t.Logf("sandbox call for the added account: %s %s %d", c.Method, c.Endpoint, c.Status)
				}
			}
			t.Fatalf("accounts in the feed's JSON: %q", got)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The added account's token revoked: the page says which account needs
	// reconnecting and offers it.
	if err := sb.RevokeTokens(sandbox.AccountCreator); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, `[...document.querySelectorAll('form[action$="/refresh"]')][0].submit()`)
	waitFor(t, ctx, "the banner naming the account",
		`document.readyState == 'complete' && !!document.querySelector('#banner-h') && document.body.innerText.includes('@`+sandbox.AccountCreator+` needs reconnecting')`,
		`document.body.innerText.slice(0, 600)`)
	srcID, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelectorAll('[data-source]')[1].dataset.source`))
	if err != nil {
		t.Fatal(err)
	}
	for _, scheme := range []string{"light", "dark"} {
		for _, width := range []int{1280, 375} {
			t.Run(fmt.Sprintf("%s %d px", scheme, width), func(t *testing.T) {
				c, _ := browser(t, width, 900)
				emulate(t, c, scheme, width)
				signIn(t, c, base)
				navigate(t, c, feedURL)
				waitFor(t, c, "the feed page", `document.querySelectorAll('[data-source]').length == 2 && document.readyState == 'complete'`, `location.href`)
				axe(t, c, "a feed page with two accounts, one needing reconnecting")
				fitsWidth(t, c, "a feed page with two accounts")
				navigate(t, c, feedURL+"/sources/"+srcID+"/remove")
				waitFor(t, c, "the removal confirmation", `document.querySelector('input[name=confirm]') && document.readyState == 'complete'`, `location.href`)
				axe(t, c, "the removal confirmation page")
				fitsWidth(t, c, "the removal confirmation page")
			})
		}
	}
}

// usernamesIn lists the accounts the feed's posts name, over every page
// (the newest posts may all be one account's).
func usernamesIn(t *testing.T, base, id string) string {
	t.Helper()
	names := map[string]bool{}
	q := "limit=50"
	for range 10 {
		resp, err := http.Get(base + "/api/v1/feeds/" + id + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Posts []struct{ Username string } `json:"posts"`
			Next  *string                     `json:"next"`
		}
		err = json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range d.Posts {
			names[p.Username] = true
		}
		if d.Next == nil {
			break
		}
		q = "limit=50&after=" + url.QueryEscape(*d.Next)
	}
	return strings.Join(slices.Sorted(maps.Keys(names)), " ")
}
