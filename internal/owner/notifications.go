package owner

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/model"
)

// NotificationStore reads a feed's delivery log; *store.Store implements it.
type NotificationStore interface {
	Notifications(ctx context.Context, feedID string, limit int) ([]model.Notification, error)
}

// DeliveryLogSize is how many of a feed's latest notifications the status
// page and the admin API show.
const DeliveryLogSize = 20

// Delivery is one notification in a feed's delivery log, as the admin API
// answers it. It holds no secret: errors name what failed, never the
// webhook URL or a credential.
type Delivery struct {
	ID       int64  `json:"id"`
	Channel  string `json:"channel"` // webhook or email
	Event    string `json:"event"`
	State    string `json:"state"` // pending, delivered or failed
	Attempts int    `json:"attempts"`
	// CreatedAt is when the event happened.
	CreatedAt time.Time `json:"created_at"`
	// NextAttemptAt is when a pending notification is tried next.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	FinishedAt    *time.Time `json:"finished_at,omitempty"`
	// HTTPStatus is the webhook receiver's answer to the last attempt.
	HTTPStatus int    `json:"http_status,omitempty"`
	Error      string `json:"error,omitempty"` // why the last attempt failed
}

// Notifications is the feed's delivery log, newest first.
func (s *Service) Notifications(ctx context.Context, id string) ([]Delivery, error) {
	if _, err := s.Feed(ctx, id); err != nil {
		return nil, err
	}
	ns, err := s.store.Notifications(ctx, id, DeliveryLogSize)
	if err != nil {
		return nil, clientErr(err)
	}
	out := make([]Delivery, len(ns))
	for i, n := range ns {
		d := Delivery{ID: n.ID, Channel: string(n.Channel), Event: n.Event, State: string(n.State), Attempts: n.Attempts,
			CreatedAt: n.CreatedAt, HTTPStatus: n.LastStatus, Error: n.LastError}
		if n.State == model.DeliveryPending {
			d.NextAttemptAt = &n.NextAt
		} else if !n.FinishedAt.IsZero() {
			d.FinishedAt = &n.FinishedAt
		}
		out[i] = d
	}
	return out, nil
}

func (h *Handler) apiNotifications(c *echo.Context) error {
	ds, err := h.svc.Notifications(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string][]Delivery{"notifications": ds})
}

// notificationsView is the data of the feed page's notifications section.
type notificationsView struct {
	Webhook, Email bool // the channels configured
	Rows           []deliveryRow
	Error          string // the log could not be read
}

type deliveryRow struct {
	Event, Channel, When, Result, Next string
	Attempts                           int
	Failed, Pending                    bool
}

// notifications reads the feed's delivery log for its page.
func (h *Handler) notifications(ctx context.Context, id string) *notificationsView {
	v := &notificationsView{}
	for _, ch := range h.conn.NotifyChannels() {
		v.Webhook = v.Webhook || ch == model.ChannelWebhook
		v.Email = v.Email || ch == model.ChannelEmail
	}
	ds, err := h.svc.Notifications(ctx, id)
	if err != nil {
		v.Error = "The delivery log could not be read."
		return v
	}
	for _, d := range ds {
		r := deliveryRow{Event: d.Event, Channel: d.Channel, When: fmtTime(d.CreatedAt), Attempts: d.Attempts,
			Failed: d.State == string(model.DeliveryFailed), Pending: d.State == string(model.DeliveryPending)}
		switch {
		case d.State == string(model.DeliveryDelivered) && d.HTTPStatus != 0:
			r.Result = "delivered (HTTP " + strconv.Itoa(d.HTTPStatus) + ")"
		case d.State == string(model.DeliveryDelivered):
			r.Result = "delivered"
		case d.Error != "":
			r.Result = d.Error
		default:
			r.Result = "waiting"
		}
		if d.NextAttemptAt != nil {
			r.Next = fmtTime(*d.NextAttemptAt)
		}
		v.Rows = append(v.Rows, r)
	}
	return v
}
