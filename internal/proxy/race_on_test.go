//go:build race

package proxy

// raceEnabled: the race detector allocates on its own, so allocation
// counts can only be compared, not required to be zero.
const raceEnabled = true
