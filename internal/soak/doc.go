// Package soak holds feedd's long-running and scale tests; it has no code
// of its own, only tests that drive the whole program (internal/app)
// against the Instagram sandbox.
//
//   - TestSoakShort (always, unless -short): a ~30 s soak of 20 feeds
//     under visitor load while the sandbox cycles through its faults.
//   - TestSoak (FEEDD_SOAK=10m): the same against 100 feeds for the given
//     duration, with 30 s fault phases.
//   - TestScaleFigures (FEEDD_SCALE=1): 10,000 feeds (FEEDD_SCALE_FEEDS):
//     the time until the poller has polled every one, the p99 of warm
//     requests meanwhile, resident memory with the hot cache at its bound,
//     and the time to serve the first and then all feeds after a restart.
//   - TestHostileMix (FEEDD_HOSTILE=60s): well-behaved visitors' p99,
//     memory growth and poll writes under made-up queries, rotating IPv6
//     addresses and OAuth callback and sign-in floods, against a quiet
//     phase of the same visitors.
//
// The figures are logged (go test -v) and, when FEEDD_SOAK_REPORT names a
// file, appended to it as Markdown.
package soak
