package metrics

import "github.com/prometheus/client_golang/prometheus"

// The metrics, by family. docs/operations.md lists them with their
// meaning; TestEveryMetricDocumented keeps the two in step.

var (
	sockLabels    = []string{"socket", "type"}
	peerLabels    = []string{"socket", "type", "remote"}
	patternLabels = []string{"role", "name"}
	discLabels    = []string{"component", "service"}

	allDescs []*prometheus.Desc
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc(name, help, labels, nil)
	allDescs = append(allDescs, d)
	return d
}

// Sockets.
var (
	descSockMsgsIn        = desc("zpeer_socket_received_messages_total", "Messages the socket received.", sockLabels...)
	descSockMsgsOut       = desc("zpeer_socket_sent_messages_total", "Messages the socket sent.", sockLabels...)
	descSockBytesIn       = desc("zpeer_socket_received_bytes_total", "Frame body bytes the socket received (not ZMTP framing).", sockLabels...)
	descSockBytesOut      = desc("zpeer_socket_sent_bytes_total", "Frame body bytes the socket sent (not ZMTP framing).", sockLabels...)
	descSockDrops         = desc("zpeer_socket_dropped_messages_total", "Outgoing copies not sent because a peer's queue was full (a PUB's slow subscriber).", sockLabels...)
	descSockDiscarded     = desc("zpeer_socket_discarded_messages_total", "Incoming messages the socket type throws away, and messages unread when a pipe closed with the socket.", sockLabels...)
	descSockConnects      = desc("zpeer_socket_connects_total", "Peer connections that completed the handshake.", sockLabels...)
	descSockDisconnects   = desc("zpeer_socket_disconnects_total", "Peer connections that ended.", sockLabels...)
	descSockReconnects    = desc("zpeer_socket_reconnects_total", "Dials after the first, per endpoint.", sockLabels...)
	descSockRejected      = desc("zpeer_socket_rejected_connections_total", "Connections refused or dropped, by reason: refused (access control), handshake, protocol, admission.", "socket", "type", "reason")
	descSockEventsDropped = desc("zpeer_socket_events_dropped_total", "Socket events dropped because the Events channel was full.", sockLabels...)
	descSockPeers         = desc("zpeer_socket_peers", "Peers connected now.", sockLabels...)
	descSockQueued        = desc("zpeer_socket_queued_messages", "Messages waiting in the peers' send queues.", sockLabels...)

	descPeerMsgsIn   = desc("zpeer_socket_peer_received_messages_total", "Messages received from one peer (WithPeerSeries).", peerLabels...)
	descPeerMsgsOut  = desc("zpeer_socket_peer_sent_messages_total", "Messages sent to one peer (WithPeerSeries).", peerLabels...)
	descPeerBytesIn  = desc("zpeer_socket_peer_received_bytes_total", "Frame body bytes received from one peer (WithPeerSeries).", peerLabels...)
	descPeerBytesOut = desc("zpeer_socket_peer_sent_bytes_total", "Frame body bytes sent to one peer (WithPeerSeries).", peerLabels...)
	descPeerQueued   = desc("zpeer_socket_peer_queued_messages", "Messages waiting in one peer's send queue (WithPeerSeries).", peerLabels...)
)

// Pattern roles.
var (
	descPatSent      = desc("zpeer_pattern_sent_messages_total", "Messages handed to the socket for the first time: requests, publications, pushed jobs, replies.", patternLabels...)
	descPatDelivered = desc("zpeer_pattern_delivered_messages_total", "Messages that reached the application: replies, requests and jobs handed to handlers, messages returned by Recv.", patternLabels...)
	descPatAcked     = desc("zpeer_pattern_acked_messages_total", "Jobs acknowledged (acked Pusher: acks received; acked Puller: acks sent).", patternLabels...)
	descPatRetried   = desc("zpeer_pattern_retries_total", "Resends: request attempts after the first, acked redeliveries.", patternLabels...)
	descPatDropped   = desc("zpeer_pattern_dropped_messages_total", "Messages lost on this side: slow subscribers, replies to requesters gone, malformed input.", patternLabels...)
	descPatDead      = desc("zpeer_pattern_dead_letters_total", "Jobs an acked Pusher gave up on after the maximum number of deliveries.", patternLabels...)
	descPatGaps      = desc("zpeer_pattern_gap_messages_total", "Messages a Subscriber knows it missed, from holes in publishers' sequence numbers.", patternLabels...)
	descPatDups      = desc("zpeer_pattern_duplicate_messages_total", "Redelivered jobs an acked Puller recognised and did not process again.", patternLabels...)
	descPatLate      = desc("zpeer_pattern_late_messages_total", "Replies for abandoned attempts, acks for jobs already settled.", patternLabels...)
	descPatErrors    = desc("zpeer_pattern_errors_total", "Failed calls: request errors, handler errors and panics.", patternLabels...)
	descPatPanics    = desc("zpeer_pattern_panics_total", "Handler panics recovered.", patternLabels...)
	descPatRefused   = desc("zpeer_pattern_refused_peers_total", "Peers a Pusher or Puller refused at the handshake because they cannot take part.", patternLabels...)
	descPatPending   = desc("zpeer_pattern_pending_messages", "Acked Pusher: jobs held (queued or in flight); Requester: requests in flight.", patternLabels...)
	descPatInFlight  = desc("zpeer_pattern_in_flight_messages", "Acked Pusher: jobs delivered to pullers and not yet acknowledged; Requester: attempts waiting for a reply.", patternLabels...)

	descPatSockMsgsIn   = desc("zpeer_pattern_socket_received_messages_total", "Messages the role's sockets received (pattern and state roles).", patternLabels...)
	descPatSockMsgsOut  = desc("zpeer_pattern_socket_sent_messages_total", "Messages the role's sockets sent (acks and retries included).", patternLabels...)
	descPatSockBytesIn  = desc("zpeer_pattern_socket_received_bytes_total", "Frame body bytes the role's sockets received.", patternLabels...)
	descPatSockBytesOut = desc("zpeer_pattern_socket_sent_bytes_total", "Frame body bytes the role's sockets sent.", patternLabels...)
	descPatSockDrops    = desc("zpeer_pattern_socket_dropped_messages_total", "Outgoing copies the role's sockets did not send because a peer's queue was full.", patternLabels...)

	descPatRoundTrip = desc("zpeer_pattern_round_trip_seconds", "Requester: request to reply; acked Pusher: push to acknowledgement.", patternLabels...)
	descPatHandler   = desc("zpeer_pattern_handler_seconds", "Replier and Puller handler run time (with pattern.WithHandlerTiming; empty otherwise).", patternLabels...)
)

// Replicated state (StateServer, Mirror).
var (
	descStateKeys      = desc("zpeer_state_keys", "Keys in the state (as the mirror has it).", patternLabels...)
	descStateSeq       = desc("zpeer_state_sequence", "Sequence number of the last change the state reflects.", patternLabels...)
	descStateChanges   = desc("zpeer_state_changes_total", "Changes published (server) or applied in order (mirror).", patternLabels...)
	descStateSnapshots = desc("zpeer_state_snapshots_total", "Snapshots sent (server) or applied (mirror).", patternLabels...)
	descStateResyncs   = desc("zpeer_state_resyncs_total", "A mirror's snapshots after its first: after a gap, a server restart or a change of server.", patternLabels...)
	descStateGaps      = desc("zpeer_state_gap_changes_total", "Changes a mirror knows it missed (each followed by a re-synchronisation).", patternLabels...)
	descStateDropped   = desc("zpeer_state_dropped_total", "Server: changes not queued for a mirror whose queue was full; mirror: messages that did not decode.", patternLabels...)
	descStateMirrors   = desc("zpeer_state_mirrors", "Mirrors subscribed to a server's changes.", patternLabels...)
)

// Durable outboxes (an acked Pusher with WithOutbox).
var (
	descOutboxJobs      = desc("zpeer_outbox_jobs", "Jobs held in the durable outbox: pushed, not yet acknowledged or dead.", patternLabels...)
	descOutboxBytes     = desc("zpeer_outbox_bytes", "Envelope bytes held in the durable outbox.", patternLabels...)
	descOutboxSegments  = desc("zpeer_outbox_segments", "Segment files of the durable outbox.", patternLabels...)
	descOutboxAppends   = desc("zpeer_outbox_appends_total", "Jobs written to the durable outbox.", patternLabels...)
	descOutboxAcks      = desc("zpeer_outbox_acks_total", "Jobs removed from the durable outbox (acknowledged or dead).", patternLabels...)
	descOutboxWrites    = desc("zpeer_outbox_writes_total", "Write calls of the durable outbox.", patternLabels...)
	descOutboxSyncs     = desc("zpeer_outbox_syncs_total", "Fsyncs of the durable outbox.", patternLabels...)
	descOutboxRecovered = desc("zpeer_outbox_recovered_jobs", "Jobs taken back from the outbox directory when the Pusher started.", patternLabels...)
	descOutboxCorrupt   = desc("zpeer_outbox_corrupt_records", "Torn or corrupt records skipped when the Pusher started.", patternLabels...)
)

// Discovery.
var (
	descDiscPacketsIn    = desc("zpeer_discovery_received_packets_total", "mDNS packets read (stack), queries for an announcer's records, responses handed to a watcher.", discLabels...)
	descDiscPacketsOut   = desc("zpeer_discovery_sent_packets_total", "mDNS packets sent: announcements, answers and goodbyes (announcer), queries (watcher).", discLabels...)
	descDiscSendErrors   = desc("zpeer_discovery_send_errors_total", "mDNS packets the network refused to send.", discLabels...)
	descDiscMalformed    = desc("zpeer_discovery_malformed_packets_total", "mDNS packets that did not parse (stack).", discLabels...)
	descDiscQueueDrops   = desc("zpeer_discovery_queue_drops_total", "Packets or queries dropped because a bounded queue was full.", discLabels...)
	descDiscEventDrops   = desc("zpeer_discovery_event_drops_total", "Peer events dropped because a subscriber's queue was full.", discLabels...)
	descDiscCoalesced    = desc("zpeer_discovery_events_coalesced_total", "Peer events merged into a waiting event of the same peer.", discLabels...)
	descDiscPeersUp      = desc("zpeer_discovery_peers_up_total", "PeerUp events decided by a watcher.", discLabels...)
	descDiscPeersDown    = desc("zpeer_discovery_peers_down_total", "PeerDown events decided by a watcher (goodbyes and expiries).", discLabels...)
	descDiscPeersIgnored = desc("zpeer_discovery_peers_ignored_total", "New peers ignored because a watcher tracked its maximum.", discLabels...)
	descDiscPeers        = desc("zpeer_discovery_peers", "Peers a watcher sees now.", discLabels...)
	descDiscSockets      = desc("zpeer_discovery_sockets", "mDNS sockets the process's stack has open (one per interface in use).")
)
