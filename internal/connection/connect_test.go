package connection

import (
	"context"
	"net/url"
	"testing"

	"github.com/feedd/feedd/internal/sandbox"
)

// Instagram approves for whichever account is logged in in the browser:
// only "connect a different account" asks it for its login screen, and
// that connect works like any other.
func TestConnectOtherAccountAsksInstagramForItsLoginScreen(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.connect("Bakery", sandbox.AccountBusiness)

	plain, err := e.svc.Connect(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := url.Parse(plain); u.Query().Has("force_reauth") {
		t.Errorf("a plain connect asks for the login screen: %s", u.RawQuery)
	}

	other, err := e.svc.ConnectOtherAccount(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(other)
	if got := u.Query().Get("force_reauth"); got != "true" {
		t.Fatalf("force_reauth = %q, want true (%s)", got, u.RawQuery)
	}
	redirect, err := e.Sandbox.Approve(sandbox.AccountCreator, e.svc.RedirectURI(), u.Query().Get("state"))
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := url.Parse(redirect)
	e.AddSecret(cb.Query().Get("code"))
	if _, err := e.svc.Callback(ctx, CallbackParams{State: cb.Query().Get("state"), Code: cb.Query().Get("code")}, nil); err != nil {
		t.Fatal(err)
	}
	acct, err := e.Sandbox.Account(sandbox.AccountCreator)
	if err != nil {
		t.Fatal(err)
	}
	if f := e.feed(id); f.Account == nil || f.Account.Username != acct.Username {
		t.Errorf("feed account = %+v, want @%s", f.Account, acct.Username)
	}
}
