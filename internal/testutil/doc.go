// Package testutil holds the helpers zpeer's tests share (as mangos keeps
// internal/test): a buffer safe for concurrent writers and a polling wait
// with a deadline. It is for tests only; no library code imports it.
package testutil
