//go:build race

package cache

// raceEnabled: the race detector drops a share of sync.Pool's items on
// purpose, so allocation figures do not hold under it.
const raceEnabled = true
