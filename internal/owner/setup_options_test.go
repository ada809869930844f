package owner

import (
	"net/http"
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/sandbox"
)

// The feed page's snippet options change the snippet and the preview
// together; a bad value is named and the defaults are shown.
func TestSetupSnippetOptions(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Live", sandbox.AccountBusiness)
	resp, page := e.get(e.srv.URL + "/setup/feeds/" + id + "?columns=4&layout=carousel&lightbox=false")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("feed page: %d", resp.StatusCode)
	}
	want := `&lt;div data-feedd=&#34;` + id + `&#34; data-columns=&#34;4&#34; data-layout=&#34;carousel&#34; data-lightbox=&#34;false&#34;&gt;&lt;/div&gt;`
	if !strings.Contains(page, want) {
		t.Errorf("snippet does not carry the options; page:\n%s", page)
	}
	if !strings.Contains(page, `src="/feeds/`+id+`/embed?columns=4&amp;layout=carousel&amp;lightbox=false"`) {
		t.Errorf("preview does not show the options")
	}
	if !strings.Contains(page, `<option value="carousel" selected>`) {
		t.Errorf("the form does not keep the chosen layout")
	}
	// The stylesheet that holds the feed's space comes first.
	if !strings.Contains(page, `&lt;link rel=&#34;stylesheet&#34; href=&#34;`+e.srv.URL+`/widget.css&#34;&gt;
&lt;div data-feedd=`) {
		t.Errorf("the snippet does not start with the stylesheet that reserves the feed's space; page:\n%s", page)
	}
	_, page = e.get(e.srv.URL + "/setup/feeds/" + id + "?lang=he")
	if !strings.Contains(page, `data-lang=&#34;he&#34;`) || !strings.Contains(page, `<option value="he" selected>`) || !strings.Contains(page, `embed?lang=he"`) {
		t.Errorf("the language is not in the snippet, the form or the preview; page:\n%s", page)
	}
	_, page = e.get(e.srv.URL + "/setup/feeds/" + id + "?columns=99")
	if !strings.Contains(page, "columns must be an integer from 1 to 8") || !strings.Contains(page, `data-feedd=&#34;`+id+`&#34;&gt;`) {
		t.Errorf("a bad option is not named, or the snippet is not the default one")
	}
}
