//go:build !linux

package fleet

import "errors"

// CountUDP needs Linux.
func (f *Fleet) CountUDP(port int) (*Traffic, error) {
	return nil, errors.New("fleet: counting packets needs Linux")
}
