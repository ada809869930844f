package sandbox_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/feedd/feedd/internal/sandbox"
)

// A test (or `feedd demo`) serves the sandbox, points feedd's upstream URLs
// at it and drives the owner's consent without a browser.
func Example() {
	sb := sandbox.New(sandbox.Options{
		RedirectURIs: []string{"http://127.0.0.1:8080/setup/instagram/callback"},
		Now:          time.Now, // inject a fake clock in tests
	})
	mux := http.NewServeMux()
	mux.Handle("/sandbox/", sb) // or http.StripPrefix("/sandbox", sb)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	_ = sb.SetBaseURL(srv.URL + "/sandbox")

	// FEEDD_INSTAGRAM_AUTHORIZE_URL, _TOKEN_URL and _GRAPH_URL:
	_, _, _ = sb.AuthorizeURL(), sb.TokenURL(), sb.GraphURL()

	// The owner clicks Allow as the business account:
	redirect, err := sb.Approve(sandbox.AccountBusiness, "http://127.0.0.1:8080/setup/instagram/callback", "state123")
	fmt.Println(err == nil && redirect != "")

	// Or a token pasted from the App Dashboard:
	tok := sb.MintLongLivedToken(sandbox.AccountCreator, time.Now().Add(-48*time.Hour))
	fmt.Println(len(tok) > 20)
	// Output:
	// true
	// true
}
