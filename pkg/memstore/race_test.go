//go:build race

package memstore

// raceEnabled skips allocation counts, which the race detector inflates.
const raceEnabled = true
