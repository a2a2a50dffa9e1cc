// Package metrics exposes zpeer's counters to Prometheus.
//
// A Collector is a prometheus.Collector over the Stats snapshots that
// sockets, pattern roles, the discovery stack and durable outboxes already
// keep: nothing is counted twice and nothing is paid between scrapes. Add
// what a process runs, register the Collector, and serve the registry:
//
//	c := metrics.NewCollector()
//	c.AddPattern(metrics.RolePuller, "jobs", puller)
//	c.AddDiscoveryStack()
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(c)
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Names follow Prometheus conventions: a zpeer_ prefix, counters ending in
// _total, durations in seconds, sizes in bytes. Labels stay bounded: the
// role and the name a source was added under, a socket's type, a rejection's
// cause, a discovery component and its service; per-peer series appear only
// with WithPeerSeries, capped. docs/operations.md lists every metric.
//
// The package lives beside the core so that the library packages (codec,
// socket, pattern, discovery) keep their short dependency list: only a
// program that imports metrics links client_golang.
package metrics
