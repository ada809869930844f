package owner

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/connection"
	"github.com/feedd/feedd/internal/sandbox"
)

type deliveries struct {
	Notifications []Delivery `json:"notifications"`
}

func TestDeliveryLogIsOnTheFeedPageAndInTheAPI(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Bakery", sandbox.AccountBusiness)
	var got deliveries
	if code := e.api("GET", "/api/admin/feeds/"+id+"/notifications", "", &got); code != http.StatusOK {
		t.Fatalf("GET notifications: %d", code)
	}
	if len(got.Notifications) != 1 {
		t.Fatalf("delivery log %+v, want the connected event", got)
	}
	d := got.Notifications[0]
	if d.Channel != "webhook" || d.Event != connection.EventConnected || d.State != "delivered" || d.Attempts != 1 ||
		d.HTTPStatus != http.StatusOK || d.FinishedAt == nil || d.NextAttemptAt != nil || d.CreatedAt.IsZero() {
		t.Fatalf("delivery %+v, want connected, delivered on attempt 1 with 200", d)
	}
	_, page := e.get(e.srv.URL + "/setup/feeds/" + id)
	for _, want := range []string{`<h2 id="notifications-h">Notifications</h2>`, "<code>connected</code>", "delivered (HTTP 200)", "FEEDD_NOTIFY_WEBHOOK"} {
		if !strings.Contains(page, want) {
			t.Errorf("feed page lacks %q", want)
		}
	}
	var apiErr apiError
	if code := e.api("GET", "/api/admin/feeds/nosuchfeed1/notifications", "", &apiErr); code != http.StatusNotFound {
		t.Errorf("unknown feed: %d %+v, want 404", code, apiErr)
	}
}

func TestFailedDeliveryShowsItsErrorAndNextTryWithoutTheURL(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	e := newEnv(t, func(o *connection.Options) { o.NotifyWebhook = dead.URL + "/hook?token=hook-url-secret" })
	e.AddSecret("hook-url-secret")
	id := e.connectAPI("Bakery", sandbox.AccountBusiness)
	var got deliveries
	e.api("GET", "/api/admin/feeds/"+id+"/notifications", "", &got)
	if len(got.Notifications) != 1 {
		t.Fatalf("delivery log %+v", got)
	}
	d := got.Notifications[0]
	if d.State != "pending" || d.NextAttemptAt == nil || !strings.HasPrefix(d.Error, "the receiver could not be reached") {
		t.Fatalf("delivery %+v, want pending with the error and its next try", d)
	}
	_, page := e.get(e.srv.URL + "/setup/feeds/" + id)
	if !strings.Contains(page, "the receiver could not be reached") {
		t.Error("the feed page does not show why the delivery failed")
	}
}

func TestFeedPageSaysWhenNoNotificationsAreSetUp(t *testing.T) {
	e := newEnv(t, func(o *connection.Options) { o.NotifyWebhook = "" })
	id := e.createFeed("Bakery").ID
	_, page := e.get(e.srv.URL + "/setup/feeds/" + id)
	if !strings.Contains(page, "No notifications are set up") {
		t.Error("the feed page does not say that no notifications are set up")
	}
}
