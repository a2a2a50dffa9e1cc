package main

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zpeer/zpeer/metrics"
)

// metricsServer serves a command's metrics on http://ADDR/metrics
// (--metrics ADDR) in the Prometheus text format, for as long as the
// command runs. A nil *metricsServer (no --metrics) does nothing.
type metricsServer struct {
	c   *metrics.Collector
	srv *http.Server
	ln  net.Listener
}

// serveMetrics starts the server, with the process's discovery stack
// already added, and says where on standard error.
func (a *app) serveMetrics(addr string) (*metricsServer, error) {
	if addr == "" {
		return nil, nil
	}
	c, err := metrics.NewCollector()
	if err != nil {
		return nil, err
	}
	c.AddDiscoveryStack()
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usagef("--metrics %s: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	m := &metricsServer{c: c, ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go m.srv.Serve(ln)
	a.errorf("zpeer: metrics on http://%s/metrics", ln.Addr())
	return m, nil
}

// collector is what the command adds its sockets and roles to (nil
// without --metrics: the Add methods are then not called).
func (m *metricsServer) collector() *metrics.Collector {
	if m == nil {
		return nil
	}
	return m.c
}

// Close stops the server.
func (m *metricsServer) Close() error {
	if m == nil {
		return nil
	}
	err := m.srv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// slogger is the logger a command gives the library with -v: its events
// (connections, refusals, redeliveries, discovery's peers; see
// docs/operations.md) as slog text lines on standard error, written
// between status-line refreshes. Without -v the library stays silent.
func (a *app) slogger(verbose bool, status func() *statusLine) *slog.Logger {
	if !verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(stderrLines{a, status}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// stderrLines writes whole lines to standard error under errMu, clearing
// the status line first.
type stderrLines struct {
	a      *app
	status func() *statusLine
}

func (w stderrLines) Write(p []byte) (int, error) {
	w.a.errMu.Lock()
	defer w.a.errMu.Unlock()
	if w.status != nil {
		w.status().clear()
	}
	return w.a.stderr.Write(p)
}

var _ io.Writer = stderrLines{}
