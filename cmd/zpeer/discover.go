package main

import (
	"context"
	"errors"
)

// startDiscovery announces the bound endpoints, or browses and connects.
func (s *session) startDiscovery(ctx context.Context) error {
	return errors.New("--discover: discovery is not available yet")
}

// rediscover connects a reopened socket to the peers discovery knows.
func (s *session) rediscover() {}
