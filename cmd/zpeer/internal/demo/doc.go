// Package demo is the network that "zpeer demo" runs: in one process and on
// the loopback interface only, peers that find each other over mDNS and
// exercise every pattern, a request/reply service with two repliers (one
// stopped midway), a publisher with several subscribers, and an
// acknowledged pipeline whose workers lose one midway, all over CURVE with
// keys made at start (and an impostor with an untrusted key that receives
// nothing), then a summary of
// the four figures per pattern: throughput, latency percentiles,
// reliability (delivered/sent) and the throughput x latency product.
//
// It is not a benchmark (see "zpeer bench" for that): the figures show
// what the patterns do under a modest, paced load on one machine.
package demo
