package discovery

import (
	"context"
	"time"
)

// staticSource lists the peers of WithStatic. They are up from the start
// and stay up.
type staticSource struct {
	w     *Watcher
	peers []Peer
}

func (s *staticSource) run(ctx context.Context) {
	peers := make([]Peer, 0, len(s.peers))
	for _, p := range s.peers {
		p = p.clone()
		p.Key = "static:" + p.Endpoints[0]
		p.Source = "static"
		p.Service = s.w.service
		peers = append(peers, p)
	}
	s.w.replace("static", peers, true, time.Now())
	<-ctx.Done()
}

func (s *staticSource) refresh(bool) {}
