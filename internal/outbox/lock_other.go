//go:build !unix

package outbox

import (
	"fmt"
	"os"
)

// lockDir opens path; without flock, two Logs on one directory are not
// detected.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return f, nil
}

func syncDir(string) error { return nil }
