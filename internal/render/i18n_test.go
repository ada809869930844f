package render

import (
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/web"
)

var placeholder = regexp.MustCompile(`\{[a-z]+\}`)

// Every language has every text, with the same placeholders as English
// (dates may name the month by number), and twelve month names.
func TestLanguagesAreComplete(t *testing.T) {
	codes := Languages()
	if len(codes) < 12 {
		t.Errorf("%d languages, want at least 12: %v", len(codes), codes)
	}
	rtlSeen := false
	en := languages[DefaultLang].texts
	for _, c := range codes {
		l := languages[c]
		rtlSeen = rtlSeen || l.dir == "rtl"
		for k, v := range en {
			got, ok := l.texts[k]
			if !ok || strings.TrimSpace(got) == "" {
				t.Errorf("%s: no text for %q", c, k)
				continue
			}
			want, have := placeholder.FindAllString(v, -1), placeholder.FindAllString(got, -1)
			slices.Sort(want)
			slices.Sort(have)
			if k == "date" {
				if !strings.Contains(got, "{d}") || !strings.Contains(got, "{y}") || !strings.Contains(got, "{m") {
					t.Errorf("%s: date %q lacks the day, month or year", c, got)
				}
			} else if !slices.Equal(want, have) {
				t.Errorf("%s: %q has placeholders %v, English %v", c, k, have, want)
			}
		}
		for k := range l.texts {
			if _, ok := en[k]; !ok {
				t.Errorf("%s: text %q that English does not have", c, k)
			}
		}
		if n := len(strings.Split(l.texts["months"], "|")); n != 12 {
			t.Errorf("%s: %d month names", c, n)
		}
	}
	if !rtlSeen {
		t.Error("no right-to-left language")
	}
}

func TestFragmentInLanguage(t *testing.T) {
	doc := testDoc(6)
	next := "MTc5NDM4ODAwMDpwMDU"
	doc.Next = &next
	doc.Posts[2].Alt = "Post by @acme" // the feed's own fallback, in English
	doc.Posts[2].Caption = nil
	tests := []struct {
		lang string
		want []string
	}{
		{"de", []string{`lang="de" dir="ltr"`, `>Folgen<span class="feedd-sr"> @acme auf Instagram</span>`, `aria-label="Beiträge von @acme"`,
			`>Mehr laden</a>`, `<span class="feedd-sr">Video</span>`, `<span class="feedd-sr">Karussell mit 3 Bildern</span>`,
			`alt="Beitrag von @acme vom 20. November 2026"`, `data-lang-src="` + pub + `/widget/i18n/de.`, `lang=de`}},
		{"ar", []string{`lang="ar" dir="rtl"`, `>تحميل المزيد</a>`, `alt="منشور من @acme بتاريخ 20 نوفمبر 2026"`}},
		{"ja", []string{`alt="@acmeの投稿（2026年11月20日）"`}},
		{"pt-BR", []string{`lang="pt"`, `>Carregar mais</a>`}},
		{"", []string{`lang="en" dir="ltr"`, `>Follow<span class="feedd-sr"> @acme on Instagram</span>`, `alt="Post by @acme on 20 November 2026"`}},
	}
	for _, tt := range tests {
		t.Run(tt.lang, func(t *testing.T) {
			o, err := ParseOptions(url.Values{"lang": {tt.lang}})
			if err != nil {
				t.Fatal(err)
			}
			html := render(t, doc, o)
			for _, w := range tt.want {
				if !strings.Contains(html, w) {
					t.Errorf("lacks %s\n%s", w, html[:min(len(html), 1500)])
				}
			}
			if tt.lang == "" && strings.Contains(html, "data-lang-src") {
				t.Error("the default language names a language file")
			}
		})
	}
	// The carousel's pictures without their own alt text, as the feed
	// names them (after their post, in English), in the feed's language.
	doc = testDoc(4)
	doc.Posts[3].Children[1].Alt = doc.Posts[3].Alt + " (2 of 3)"
	o, _ := ParseOptions(url.Values{"lang": {"de"}})
	if html := render(t, doc, o); !strings.Contains(html, `alt="`+doc.Posts[3].Alt+` (2 von 3)"`) {
		t.Errorf("carousel picture alt not in German:\n%s", html)
	}
}

// In a feed of several accounts, a post without alt text or caption is
// described as by its own account, in the feed's language, not as by the
// account in the header.
func TestFragmentNamesEachPostsAccount(t *testing.T) {
	doc := testDoc(3)
	doc.Posts[1].Alt = "Post by @bakery_two" // the feed's own fallback, in English
	doc.Posts[1].Caption = nil
	doc.Posts[1].Username = "bakery_two"
	o, err := ParseOptions(url.Values{"lang": {"de"}})
	if err != nil {
		t.Fatal(err)
	}
	html := render(t, doc, o)
	if !strings.Contains(html, `alt="Beitrag von @bakery_two vom `) {
		t.Errorf("the second account's post is not described as its own, in German:\n%s", html[:min(len(html), 2000)])
	}
	if strings.Contains(html, `alt="Post by @bakery_two`) {
		t.Error("the second account's post keeps its English fallback")
	}
}

func TestOwnerTexts(t *testing.T) {
	doc := testDoc(6)
	next := "MTc5NDM4ODAwMDpwMDU"
	doc.Next = &next
	v := url.Values{"lang": {"fr"}, "i18n-load-more": {`Encore <plus>`}, "i18n-close": {"Fermer ×"}, "i18n-follow": {"Abonnez-vous"}}
	o, err := ParseOptions(v)
	if err != nil {
		t.Fatal(err)
	}
	html := render(t, doc, o)
	for _, w := range []string{`>Encore &lt;plus&gt;</a>`, `>Abonnez-vous<span class="feedd-sr"> @acme sur Instagram</span>`,
		`data-i18n-close="Fermer ×"`, `i18n-load-more=Encore&#43;%3Cplus%3E`, `lang=fr`} {
		if !strings.Contains(html, w) {
			t.Errorf("lacks %s\n%s", w, html[:min(len(html), 1500)])
		}
	}
	if strings.Contains(html, "data-i18n-follow") || strings.Contains(html, "data-i18n-load-more") {
		t.Error("texts the fragment already shows are handed to the widget too")
	}
	for q, name := range map[string]string{
		"i18n-loadmore=x": "i18n-loadmore",
		"i18n-close=" + strings.Repeat("x", MaxTextLen+1): "i18n-close",
		"i18n-close=a%0Ab":    "i18n-close",
		"i18n-months=Jan|Feb": "i18n-months",
		"lang=xx":             "lang",
	} {
		v, _ := url.ParseQuery(q)
		_, err := ParseOptions(v)
		if e, ok := web.As(err); !ok || e.Status != 400 || !strings.Contains(e.Message, name) {
			t.Errorf("%s: got %v, want a 400 naming %s", q, err, name)
		}
	}
}

func TestLanguageFileRoute(t *testing.T) {
	e := newTestEcho(t, newFakeSource(pub), pub)
	w := do(e, "GET", "/feeds/demo.html?lang=he")
	src := regexp.MustCompile(`data-lang-src="` + pub + `([^"]+)"`).FindStringSubmatch(w.Body.String())
	if src == nil {
		t.Fatalf("no language file named:\n%s", w.Body)
	}
	w = do(e, "GET", src[1])
	var texts map[string]string
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &texts) != nil || texts["close"] != "סגירה" {
		t.Fatalf("%s: %d %s", src[1], w.Code, w.Body)
	}
	if cc := w.Header().Get("Cache-Control"); cc != LangCacheControl || w.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("headers %v", w.Header())
	}
	if w := do(e, "GET", "/widget/i18n/he.000000000000.json"); w.Code != 404 {
		t.Errorf("a stale language file URL answered %d", w.Code)
	}
}
