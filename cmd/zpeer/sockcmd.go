package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/socket"
)

// sockOpts are the flags of the socket commands.
type sockOpts struct {
	binds    []string
	connects []string
	discover string
	ifaces   []string
	codec    string
	topics   []string
	count    int
	timeout  time.Duration
	retries  int
	json     bool
	exec     string
	msgType  string
	priority uint8
	headers  []string
	body     string
	peers    int
	peersSet bool            // --peers was given
	changed  map[string]bool // the flags given
	linger   time.Duration
	interval time.Duration
	identity string
	name     string
	verbose  bool
	metrics  string // --metrics ADDR
	frameSep string // --frame-sep: raw messages' frames, split and joined on it
	keySep   string // push --key-sep: each message's partition key ends at SEP
	ack      ackOpts
	sec      secFlags
	lastVal  bool // pub --last-value
}

// role says what a socket command does with messages.
type role uint8

const (
	roleSend    role = 1 << iota // sends MESSAGE arguments or stdin lines
	roleRecv                     // prints what it receives
	roleReply                    // answers each request (rep, router)
	roleRequest                  // waits for a reply to each message (req, dealer)
)

type sockCmd struct {
	name    string
	typ     socket.Type
	role    role
	short   string
	long    string
	example string
}

var sockCmds = []sockCmd{
	{
		name: "req", typ: socket.REQ, role: roleSend | roleRecv | roleRequest,
		short: "Send requests and print the replies",
		long: `req sends each MESSAGE argument, or else each line of standard input, as one
request, waits for its reply and prints it. With no reply within --timeout it
tries again (--retries times, on a fresh connection, as ZeroMQ's "lazy pirate"
does) and then exits 1.`,
		example: `  zpeer req --connect tcp://127.0.0.1:5555 hello world
  printf 'a\nb\n' | zpeer req --connect tcp://127.0.0.1:5555 --timeout 2s --retries 3 --json`,
	},
	{
		name: "rep", typ: socket.REP, role: roleRecv | roleReply,
		short: "Answer requests: echo them, or reply with a command's output",
		long: `rep prints each request it receives and answers it: with the request's body
unchanged, or with the standard output of --exec CMD run with the request on
its standard input.`,
		example: `  zpeer rep --bind 'tcp://*:5555'
  zpeer rep --bind tcp://127.0.0.1:5555 --exec 'tr a-z A-Z' --count 1`,
	},
	{
		name: "pub", typ: socket.PUB, role: roleSend,
		short: "Publish messages under a topic",
		long: `pub publishes each MESSAGE argument, or else each line of standard input,
under --topic. It first waits (up to --timeout, saying so on standard error)
for its subscribers: one per --connect, or one when it binds (--peers N asks
for more, --peers 0 for none), because a message published before a
subscription has arrived is not sent to that subscriber (ZeroMQ's "slow
joiner"). When they do not come in time it exits 1 without publishing.`,
		example: `  zpeer pub --bind 'tcp://*:5556' --topic weather --interval 1s sunny
  zpeer pub --connect tcp://127.0.0.1:5556 --topic logs < app.log`,
	},
	{
		name: "sub", typ: socket.SUB, role: roleRecv,
		short: "Subscribe to topics and print what is published",
		long: `sub subscribes to each --topic prefix and prints each publication as TOPIC
BODY, or BODY alone when it has no topic. With no --topic it subscribes to
everything (a Go pattern.Subscriber, like a ZeroMQ SUB socket, receives
nothing until it subscribes).`,
		example: `  zpeer sub --connect tcp://127.0.0.1:5556 --topic weather --count 3
  zpeer sub --bind 'tcp://*:5556' --json | jq .body`,
	},
	{
		name: "push", typ: socket.PUSH, role: roleSend,
		short: "Push messages to workers, load-balanced",
		long: `push sends each MESSAGE argument, or else each line of standard input, to
the next ready worker (pull) round-robin. A send waits up to --timeout for a
worker.

With --ack, each message is a job that a "pull --ack" worker acknowledges
when it has processed it: push binds, the workers connect, and push exits 0
only when every job was acknowledged. A job whose worker fails or dies is
redelivered to another worker; one that fails --max-deliveries times is
reported dead on standard error, and push exits 1.

With --key-sep SEP, the text of each message before its first SEP (all of
it when it has none) is its partition key: every message of a key goes to
the same worker, in order, and the keys spread evenly over the workers
connected now (a worker that leaves moves only its own keys). With --ack a
key's next job waits until the one before it is acknowledged, so a key's
jobs are done in order even when a worker dies; without --ack the order
holds while the set of workers does not change.`,
		example: `  seq 100 | zpeer push --connect tcp://127.0.0.1:5557
  zpeer push --bind 'tcp://*:5557' --count 1000 job
  seq 10 | zpeer push --ack --bind tcp://127.0.0.1:5558
  zpeer push --ack --bind tcp://127.0.0.1:5558 --key-sep , < transfers.csv`,
	},
	{
		name: "pull", typ: socket.PULL, role: roleRecv,
		short: "Pull messages from pushers and print them",
		long: `pull prints each message it receives, fair-queued over its pushers, or
with --exec runs CMD with the message on its standard input.

With --ack it is a worker of a "push --ack": it connects to the pusher and
acknowledges each job once it is done and out of the process (its line
written to standard output, or CMD exited 0 and its output written), or
hands it back for another worker (CMD failed). Jobs it held when it was
killed go to the other workers; none it acknowledged is lost with it.`,
		example: `  zpeer pull --bind 'tcp://*:5557' --count 100
  zpeer pull --bind tcp://127.0.0.1:5557 --json
  zpeer pull --ack --connect tcp://127.0.0.1:5558 --exec './work.sh'`,
	},
	{
		name: "dealer", typ: socket.DEALER, role: roleSend | roleRecv | roleRequest,
		short: "Send requests without waiting for each reply, print the replies",
		long: `dealer sends each MESSAGE argument, or else each line of standard input, as
a request (after an empty delimiter frame, so rep and router peers alike can
answer it) without waiting, and prints the replies as they come. It exits when
every request has had a reply, or 1 when --timeout passes without one.`,
		example: `  zpeer dealer --connect tcp://127.0.0.1:5555 one two three
  seq 1000 | zpeer dealer --connect tcp://127.0.0.1:5555 --identity me --json`,
	},
	{
		name: "router", typ: socket.ROUTER, role: roleRecv | roleReply,
		short: "Answer requests from many peers at once",
		long: `router prints each request it receives and answers the peer that sent it,
with the body unchanged or with the standard output of --exec CMD. It takes
requests from req and dealer peers alike; --json shows each peer's routing id.`,
		example: `  zpeer router --bind 'tcp://*:5555' --json
  zpeer router --bind tcp://127.0.0.1:5555 --exec 'wc -c'`,
	},
	{
		name: "pair", typ: socket.PAIR, role: roleSend | roleRecv,
		short: "Talk to one peer both ways",
		long: `pair sends each MESSAGE argument, or else each line of standard input, to
its one peer (a second peer is refused while the first is connected), and
prints each message it receives meanwhile. It exits after --count messages
received, after --timeout with none (when given), or on Ctrl-C.`,
		example: `  zpeer pair --bind tcp://127.0.0.1:5558
  zpeer pair --connect tcp://127.0.0.1:5558 hello`,
	},
}

func (a *app) socketCommands() []*cobra.Command {
	cmds := make([]*cobra.Command, 0, len(sockCmds))
	for _, sc := range sockCmds {
		cmds = append(cmds, a.socketCommand(sc))
	}
	return cmds
}

func (a *app) socketCommand(sc sockCmd) *cobra.Command {
	o := &sockOpts{}
	use := sc.name + " [flags]"
	if sc.role&roleSend != 0 {
		use += " [MESSAGE...]"
	}
	cmd := &cobra.Command{
		Use:     use,
		Short:   sc.short,
		Long:    sc.long,
		Example: sc.example,
		Args: func(_ *cobra.Command, args []string) error {
			if sc.role&roleSend == 0 && len(args) > 0 {
				return usagef("%s takes no MESSAGE arguments (got %q)", sc.name, args[0])
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			o.peersSet = cmd.Flags().Changed("peers")
			o.changed = make(map[string]bool)
			cmd.Flags().Visit(func(f *pflag.Flag) { o.changed[f.Name] = true })
			if err := o.validate(sc); err != nil {
				return err
			}
			return a.runSocket(cmd.Context(), sc, o, args)
		}),
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringArrayVarP(&o.binds, "bind", "b", nil, "listen on `EP` (tcp://host:port, tcp://*:0, ipc:///path); repeatable")
	f.StringArrayVarP(&o.connects, "connect", "c", nil, "connect to `EP`; repeatable")
	f.StringVarP(&o.discover, "discover", "d", "", "announce (with --bind) or find and connect to (without) the peers of `SERVICE` over mDNS")
	f.StringArrayVar(&o.ifaces, "iface", nil, "network interface `NAME` for --discover (lo: this machine only); repeatable, default all multicast interfaces")
	f.StringVar(&o.codec, "codec", "msgpack", "`CODEC`: msgpack (zpeer envelopes) or raw (plain ZeroMQ frames, for any ZeroMQ peer)")
	switch sc.typ {
	case socket.PUB:
		f.StringArrayVarP(&o.topics, "topic", "t", nil, "publish under topic `T`")
		f.BoolVar(&o.lastVal, "last-value", false, "keep the last message of each topic (up to 10000 topics) and send it to each subscriber as it subscribes, before the live stream")
	case socket.SUB:
		f.StringArrayVarP(&o.topics, "topic", "t", nil, "subscribe to topic prefix `T`; repeatable, default everything")
	}
	countHelp := "stop after `N` messages received (0: no limit)"
	if sc.role&roleSend != 0 {
		countHelp = "stop after `N` messages sent, repeating the MESSAGE arguments if needed (0: each message once)"
	}
	f.IntVarP(&o.count, "count", "n", 0, countHelp)
	timeout, timeoutHelp := time.Duration(0), "give up when the next message does not come within `D` (0: wait for ever); see --help"
	switch {
	case sc.role&roleRequest != 0:
		timeout, timeoutHelp = 5*time.Second, "give up when a reply does not come within `D`; see --help"
	case sc.typ == socket.PAIR:
		timeoutHelp = "give up when no message comes, or no peer takes one, for `D` (0: wait for ever)"
	case sc.role&roleSend != 0:
		timeout, timeoutHelp = 5*time.Second, "give up when no peer takes a message within `D` (0: wait for ever); see --help"
	}
	f.DurationVar(&o.timeout, "timeout", timeout, timeoutHelp)
	if sc.typ == socket.REQ {
		f.IntVar(&o.retries, "retries", 0, "resend a request that had no reply `N` more times, on a fresh connection")
	}
	if sc.role&roleRecv != 0 {
		f.BoolVar(&o.json, "json", false, "print one JSON object per message received (body, topic, id, type, priority, timestamp, sequence, sender, headers)")
	}
	if sc.role&roleReply != 0 {
		f.StringVarP(&o.exec, "exec", "e", "", "reply with the standard output of shell command `CMD`, run with the request on its standard input")
	}
	if sc.typ == socket.PULL {
		f.StringVarP(&o.exec, "exec", "e", "", "run shell command `CMD` for each message, with its body on standard input, instead of printing it (with --ack: acknowledge when CMD exits 0)")
	}
	var sepHelp []string
	if sc.role&(roleSend|roleReply) != 0 {
		sepHelp = append(sepHelp, "split each message sent into frames at `SEP`")
	}
	if sc.role&roleRecv != 0 {
		sep := "`SEP`"
		if len(sepHelp) > 0 {
			sep = "SEP" // pflag names the value after the first quoted word only
		}
		sepHelp = append(sepHelp, "print the frames of a message received joined with "+sep+" (default: a space)")
	}
	f.StringVar(&o.frameSep, "frame-sep", "", "--codec raw: "+strings.Join(sepHelp, "; "))
	if sc.typ == socket.PUSH || sc.typ == socket.PULL {
		o.ack.addFlags(f, sc.typ)
	}
	if sc.typ == socket.PUSH {
		f.StringVar(&o.keySep, "key-sep", "", "partition by key: the text of each message before its first `SEP` is its key, and every message of a key goes to the same worker, in order")
	}
	if sc.role&(roleSend|roleReply) != 0 {
		f.StringVar(&o.body, "body", bodyText, "`FORMAT` of the msgpack body sent: text (a string), json (each message is JSON, sent as the same MessagePack value) or bin (the bytes as they are)")
		f.StringVar(&o.msgType, "type", "", "message type `T` in the envelope")
		f.Uint8Var(&o.priority, "priority", 0, "message priority `P` (0-255; above 0 jumps the queue)")
		f.StringArrayVarP(&o.headers, "header", "H", nil, "envelope header `KEY=VALUE`; repeatable")
	}
	if sc.role&roleSend != 0 {
		peersHelp := "wait for `N` connected peers before sending"
		if sc.typ == socket.PUB {
			peersHelp = "wait for `N` subscribers before publishing (default: one per --connect)"
		}
		f.IntVar(&o.peers, "peers", 0, peersHelp)
		f.DurationVar(&o.interval, "interval", 0, "pause `D` between messages")
	}
	if sc.typ == socket.REQ || sc.typ == socket.DEALER {
		f.StringVar(&o.identity, "identity", "", "routing `ID` announced to router peers")
	}
	o.sec.register(f)
	f.StringVar(&o.name, "name", "", "node `NAME`: the sender in envelopes and discovery (default HOST-PID)")
	f.DurationVar(&o.linger, "linger", time.Second, "on exit, wait up to `D` for queued messages to go out")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log connections and a final count on standard error")
	f.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics on http://`ADDR`/metrics while the command runs (host:port; :0 picks a port)")
	cmd.Long += "\n\n" + timeoutRule
	return cmd
}

// timeoutRule is the one meaning of --timeout, in every socket command's
// help.
const timeoutRule = `--timeout D bounds each wait for what the command needs next: a peer to
take a message (push; pub: its subscribers), a reply (req, dealer), the next
message (sub, pull, rep, router). When it runs out the command exits 1,
except a receiver given no --count that has already received a message: its
stream has ended, and it exits 0.`

func defaultName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "zpeer"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

// validate checks the flags before anything touches the network.
func (o *sockOpts) validate(sc sockCmd) error {
	if o.name == "" {
		o.name = defaultName()
	}
	if o.discover != "" {
		if _, err := discovery.ServiceType(o.discover); err != nil {
			return usageError{err}
		}
	}
	if _, err := codec.Lookup(o.codec); err != nil {
		return usagef("unknown codec %q (want %s)", o.codec, strings.Join(codec.Names(), " or "))
	}
	if len(o.binds) == 0 && len(o.connects) == 0 && o.discover == "" {
		return usagef("%s needs --bind, --connect or --discover", sc.name)
	}
	if len(o.ifaces) > 0 && o.discover == "" {
		return usagef("--iface needs --discover")
	}
	switch o.body {
	case "", bodyText, bodyJSON, bodyBin:
	default:
		return usagef("unknown --body %q (want text, json or bin)", o.body)
	}
	if o.count < 0 || o.retries < 0 || o.peers < 0 || o.timeout < 0 || o.interval < 0 || o.linger < 0 {
		return usagef("--count, --retries, --peers, --timeout, --interval and --linger cannot be negative")
	}
	if sc.typ == socket.PUB && len(o.topics) > 1 {
		return usagef("pub publishes under one --topic (got %d)", len(o.topics))
	}
	for _, h := range o.headers {
		if k, _, ok := strings.Cut(h, "="); !ok || k == "" {
			return usagef("bad --header %q: want KEY=VALUE", h)
		}
	}
	if o.changed["key-sep"] && o.keySep == "" {
		return usagef("--key-sep needs a separator")
	}
	if o.json && sc.role&roleRecv == 0 {
		return usagef("--json applies to commands that receive")
	}
	if o.frameSep != "" && o.codec != "raw" {
		return usagef("--frame-sep needs --codec raw (a zpeer envelope is one frame)")
	}
	if err := o.ack.validate(sc, o); err != nil {
		return err
	}
	return o.sec.resolve(len(o.binds) > 0, o.discover != "")
}
