package model

import "time"

// Channel is how an owner notification is delivered.
type Channel string

// Notification channels.
const (
	ChannelWebhook Channel = "webhook"
	ChannelEmail   Channel = "email"
)

// DeliveryState is where a notification's delivery stands.
type DeliveryState string

// Delivery states.
const (
	DeliveryPending   DeliveryState = "pending"   // waiting for its first or next attempt
	DeliveryDelivered DeliveryState = "delivered" // the receiver took it
	DeliveryFailed    DeliveryState = "failed"    // given up: refused, out of attempts or dropped
)

// Notification is one event on its way to the owner through one channel,
// and the record of its delivery shown in the feed's delivery log.
type Notification struct {
	ID        int64
	FeedID    string
	Channel   Channel
	Event     string
	Body      []byte // the event's JSON, sent as is on every attempt
	State     DeliveryState
	Attempts  int
	CreatedAt time.Time
	// NextAt is when a pending notification is tried next.
	NextAt     time.Time
	FinishedAt time.Time // zero while pending
	// LastStatus is the HTTP status of the last webhook attempt (0: none, or e-mail).
	LastStatus int
	LastError  string // why the last attempt failed; never holds a secret
}
