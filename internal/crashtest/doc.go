// Package crashtest proves that feedd loses nothing when it dies without
// warning. Its test builds the real binary, runs "feedd demo" on one data
// dir, drives admin changes, connects, refreshes (polls with media writes)
// and visitor reads against it, kills it with SIGKILL at a random moment,
// and checks the data dir before and after each restart: the database
// passes integrity_check, every stored token decrypts, no feed loses the
// posts it had, acknowledged admin changes are still there, and every
// image a feed names is served whole while nothing half-written or
// orphaned is.
//
// The package holds only tests:
//
//	go test -v -run TestCrashSafety ./internal/crashtest/                     # 8 kills
//	FEEDD_CRASH_KILLS=50 go test -v -timeout 30m ./internal/crashtest/      # the long run
//
// FEEDD_CRASH_SEED replays a run (the seed is logged), FEEDD_CRASH_WORKERS
// sets the number of concurrent clients (default 3), FEEDD_CRASH_BIN
// reuses a built feedd binary and FEEDD_CRASH_KEEP=1 keeps the data dir.
package crashtest
