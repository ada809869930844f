// Package soak holds feedd's long-running and scale tests; it has no code
// of its own, only tests that drive the whole program (internal/app)
// against the Instagram sandbox.
//
//   - TestSoakShort (always, unless -short): a ~30 s soak of 20 feeds
//     under visitor load while the sandbox cycles through its faults.
//   - TestSoak (FEEDD_SOAK=10m): the same against 100 feeds for the given
//     duration, with 30 s fault phases.
//   - TestScaleFigures (FEEDD_SCALE=1): resident memory with 1,000 feeds
//     cached, and the time to serve all of them after a restart.
//
// The figures are logged (go test -v) and, when FEEDD_SOAK_REPORT names a
// file, appended to it as Markdown.
package soak
