//go:build race

package main

// raceEnabled builds the binary under test with the race detector too, so
// the end-to-end tests catch data races in zpeer itself.
const raceEnabled = true
