package graph

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestDecodeErrorClassifiesByNumbers(t *testing.T) {
	graphErr := func(code, sub int, typ string, transient bool) string {
		tr := "false"
		if transient {
			tr = "true"
		}
		return `{"error":{"message":"m","type":"` + typ + `","code":` + itoa(code) + `,"error_subcode":` + itoa(sub) + `,"is_transient":` + tr + `,"fbtrace_id":"Ax1"}}`
	}
	tests := []struct {
		name     string
		endpoint string
		status   int
		body     string
		want     Kind
		reauth   bool
	}{
		{"190 expired", endpointMe, 400, graphErr(190, 463, "OAuthException", false), KindTokenInvalid, true},
		{"190 password changed", endpointMedia, 400, graphErr(190, 460, "OAuthException", false), KindTokenInvalid, true},
		{"190 app removed", endpointMedia, 400, graphErr(190, 458, "OAuthException", false), KindTokenInvalid, true},
		{"102 session", endpointMe, 400, graphErr(102, 0, "OAuthException", false), KindTokenInvalid, true},
		{"4 app limit, marked transient", endpointMe, 400, graphErr(4, 0, "OAuthException", true), KindThrottled, false},
		{"17 user limit", endpointMe, 400, graphErr(17, 0, "OAuthException", false), KindThrottled, false},
		{"32", endpointMe, 400, graphErr(32, 0, "OAuthException", false), KindThrottled, false},
		{"613", endpointMe, 400, graphErr(613, 0, "OAuthException", false), KindThrottled, false},
		{"341", endpointMe, 400, graphErr(341, 0, "OAuthException", false), KindThrottled, false},
		{"80002 BUC", endpointMedia, 400, graphErr(80002, 0, "OAuthException", true), KindThrottled, false},
		{"368 blocked", endpointMedia, 400, graphErr(368, 1390008, "OAuthException", false), KindThrottled, false},
		{"1 unknown", endpointMe, 500, graphErr(1, 0, "OAuthException", false), KindTransient, false},
		{"2 service", endpointMe, 503, graphErr(2, 0, "OAuthException", true), KindTransient, false},
		{"10 permission", endpointMe, 400, graphErr(10, 0, "OAuthException", false), KindPermission, true},
		{"200 permission", endpointMe, 403, graphErr(200, 0, "IGApiException", false), KindPermission, true},
		{"299 permission", endpointMe, 403, graphErr(299, 0, "IGApiException", false), KindPermission, true},
		{"100 bad param, IG type", endpointMedia, 400, graphErr(100, 33, "IGApiException", false), KindBadRequest, false},
		{"unknown code", endpointMe, 400, graphErr(12345, 0, "Whatever", false), KindBadRequest, false},
		{"unknown code flagged transient", endpointMe, 400, graphErr(12345, 0, "Whatever", true), KindTransient, false},
		{"html 502", endpointMe, 502, `<html><body>Bad gateway</body></html>`, KindTransient, false},
		{"empty 500", endpointMe, 500, ``, KindTransient, false},
		{"429 without body", endpointMe, 429, ``, KindThrottled, false},
		{"oauth string error", endpointCode, 400, `{"error":"invalid_request","error_description":"Invalid platform app"}`, KindInvalidApp, false},
		{"too young on refresh", endpointRefresh, 400, `{"error":{"message":"Token must be at least 24 hours old","code":190}}`, KindTokenTooYoung, false},
		{"24 hours elsewhere is no refresh refusal", endpointMe, 400, `{"error":{"message":"within 24 hours","code":190}}`, KindTokenInvalid, true},
		{"101 bad secret", endpointExchange, 400, `{"error":{"message":"Error validating client secret.","code":101}}`, KindInvalidApp, false},
		{"code used", endpointCode, 400, `{"error_type":"OAuthException","code":400,"error_message":"Matching code was not found or was already used"}`, KindCodeInvalid, false},
		{"code expired", endpointCode, 400, `{"error_type":"OAuthException","code":400,"error_message":"This authorization code has expired"}`, KindCodeInvalid, false},
		{"redirect", endpointCode, 400, `{"error_type":"OAuthException","code":400,"error_message":"Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request"}`, KindRedirectMismatch, false},
		{"token host with graph code", endpointCode, 400, `{"error_type":"OAuthException","code":2,"error_message":"Service temporarily unavailable"}`, KindTransient, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := decodeError(tt.endpoint, tt.status, []byte(tt.body))
			if e.Kind != tt.want {
				t.Errorf("kind = %v, want %v (%s)", e.Kind, tt.want, e)
			}
			if e.NeedsReauth() != tt.reauth {
				t.Errorf("NeedsReauth = %v", e.NeedsReauth())
			}
			if !errors.Is(e, kindSentinels[tt.want]) {
				t.Errorf("errors.Is(%v, %v) = false", e, kindSentinels[tt.want])
			}
			for k, s := range kindSentinels {
				if Kind(k) != tt.want && errors.Is(e, s) && !(s == ErrTransient && tt.want == KindUnreachable) {
					t.Errorf("also matches %v", s)
				}
			}
			if e.HTTPStatus != tt.status {
				t.Errorf("status = %d", e.HTTPStatus)
			}
		})
	}
}

func TestDecodeErrorKeepsGraphDetails(t *testing.T) {
	e := decodeError(endpointMe, 400, fixture(t, "error_graph_token_expired.json", ""))
	if e.Code != 190 || e.Subcode != 463 || e.Type != "OAuthException" || e.FBTraceID != "AbCdEfGhIjK" ||
		!strings.HasPrefix(e.Message, "Error validating access token") {
		t.Errorf("got %+v", e)
	}
	want := "graph: me: token_invalid: Error validating access token: Session has expired on Friday, 13-Aug-21 10:00:00 PDT. (code 190, subcode 463, http 400)"
	if e.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", e.Error(), want)
	}
}

func TestErrorMessagesAreSanitized(t *testing.T) {
	body := `{"error":{"message":"bad token ` + testToken + ` at https://graph.instagram.com/me?access_token=` + testToken +
		`&code=` + testCode + "\x00\x1b[31m" + strings.Repeat("x", 1000) + `","code":190}}`
	e := decodeError(endpointMe, 400, []byte(body), testToken)
	assertNoSecrets(t, "message", e.Error())
	if strings.ContainsAny(e.Message, "\x00\x1b") {
		t.Errorf("control characters kept: %q", e.Message)
	}
	if len(e.Message) > maxMessage+len("…") {
		t.Errorf("message not bounded: %d bytes", len(e.Message))
	}
	// Upstream HTML (which may reflect the request) is never copied.
	e = decodeError(endpointMe, 502, []byte(`<html>`+testToken+`</html>`))
	if e.Message != "HTTP 502 Bad Gateway" {
		t.Errorf("message = %q", e.Message)
	}
}

func TestNoSecretInAnyErrorOrLogLine(t *testing.T) {
	// A hostile upstream echoes every secret it received, in every place it can.
	echo := func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		all := r.URL.String() + " " + r.Form.Encode()
		switch {
		case strings.Contains(r.URL.Path, "oauth"):
			reply(w, 400, []byte(`{"error_type":"OAuthException","code":400,"error_message":"Matching code was not found: `+all+`"}`))
		case strings.Contains(r.URL.Path, "media"):
			// Good first page whose next link points away, with the token inside.
			reply(w, 200, []byte(`{"data":[{"id":"1","media_type":"IMAGE"}],"paging":{"next":"https://evil.example/`+
				testToken+`?access_token=`+testToken+`"}}`))
		case strings.Contains(r.URL.Path, "refresh"):
			reply(w, 200, []byte(`{"access_token":"","echo":"`+all+`"}`)) // malformed: no token
		default:
			reply(w, 400, []byte(`{"error":{"message":"Invalid OAuth access token `+all+`","code":190,"fbtrace_id":"`+testToken+`"}}`),
				"X-App-Usage", `{"call_count":`+testToken+`}`)
		}
	}
	e := newEnv(t, echo)
	ctx := context.Background()
	var errs []error
	_, err := e.c.ExchangeCode(ctx, testCode)
	errs = append(errs, err)
	_, err = e.c.ExchangeLongLived(ctx, "IGAAshortTOKENflat123")
	errs = append(errs, err)
	_, err = e.c.Refresh(ctx, testAcct, testToken)
	errs = append(errs, err)
	_, err = e.c.Me(ctx, testAcct, testToken)
	errs = append(errs, err)
	_, err = e.c.Media(ctx, "other", testToken, 5)
	errs = append(errs, err)

	// And a transport failure, whose *url.Error holds the full URL.
	addr := closedAddr(t)
	e2 := newEnv(t, nil, func(c *Config) { c.GraphURL = "http://" + addr; c.Logger = e.c.log })
	_, err = e2.c.Me(ctx, testAcct, testToken)
	errs = append(errs, err)

	for i, err := range errs {
		if err == nil {
			t.Errorf("call %d: no error", i)
			continue
		}
		assertNoSecrets(t, "error", err.Error())
		for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
			assertNoSecrets(t, "wrapped error", u.Error())
		}
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "graph call") {
		t.Fatalf("expected debug logs, got %q", logs)
	}
	assertNoSecrets(t, "log", logs)
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://graph.instagram.com/v25.0/me/media?fields=id&access_token=IGAAx&after=QV",
			"https://graph.instagram.com/v25.0/me/media?fields=id&access_token=REDACTED&after=QV"},
		{"https://graph.instagram.com/access_token?grant_type=ig_exchange_token&client_secret=s3&access_token=IG",
			"https://graph.instagram.com/access_token?grant_type=ig_exchange_token&client_secret=REDACTED&access_token=REDACTED"},
		{"https://feedd.example/cb?code=AQB#_&state=s", "https://feedd.example/cb?code=REDACTED#_&state=s"},
		{"https://scontent.cdninstagram.com/v/a.jpg?_nc_ht=x&oh=00_Af&oe=6720F1A2", "https://scontent.cdninstagram.com/v/a.jpg?_nc_ht=x&oh=REDACTED&oe=6720F1A2"},
		{"Get \"http://h/x?ACCESS_TOKEN=IG\": dial tcp", "Get \"http://h/x?ACCESS_TOKEN=REDACTED\": dial tcp"},
		{"next=https%3A%2F%2Fg%2F%3Faccess_token%3DIGAA%26a%3D1", "next=https%3A%2F%2Fg%2F%3Faccess_token%3DREDACTED%26a%3D1"},
		{`{"access_token":"IGAA","user_id":1}`, `{"access_token":"REDACTED","user_id":1}`},
		{"error_code=190&barcode=5&zipcode=1", "error_code=190&barcode=5&zipcode=1"},
		{"no secrets here", "no secrets here"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}
