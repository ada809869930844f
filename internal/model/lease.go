package model

// LeaseKind names the work a lease claims: the poll of a feed or the
// refresh of its token. Instances sharing one database claim each slot of
// such work (one next poll time, one scheduled refresh) before doing it, so
// exactly one of them does it.
type LeaseKind string

// Lease kinds.
const (
	LeasePoll    LeaseKind = "poll"
	LeaseRefresh LeaseKind = "refresh"
	// LeaseSourceRefresh is the refresh of a further source's token; its
	// leases are named "feed id/source id".
	LeaseSourceRefresh LeaseKind = "source_refresh"
)

// TokenTask names a periodic job about a feed's token that one instance
// claims for a period (store.ClaimTokenTask).
type TokenTask string

const (
	// TaskExpiryWarning is the token_expiring reminder.
	TaskExpiryWarning TokenTask = "expiry_warning"
	// TaskProbe is the check that an idle token still works.
	TaskProbe TokenTask = "probe"
)
