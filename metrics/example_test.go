package metrics_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zpeer/zpeer/metrics"
	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

// serve is docs/operations.md's metrics-go block, word for word
// (TestOperationsDocBlock checks).
func serve(puller *pattern.Puller[string], sock *socket.Socket) error {
	c, err := metrics.NewCollector()
	if err != nil {
		return err
	}
	c.AddPattern(metrics.RolePuller, "jobs", puller) // a pattern role, under a name of yours
	c.AddSocket("feed", sock)                        // a raw socket
	c.AddDiscoveryStack()                            // the process's mDNS stack
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return nil
}

func Example() {
	puller, err := pattern.NewPuller(func(context.Context, string) error { return nil },
		pattern.WithBind("tcp://127.0.0.1:0"), pattern.WithHandlerTiming())
	if err != nil {
		panic(err)
	}
	defer puller.Close()
	sock, err := socket.New(socket.SUB)
	if err != nil {
		panic(err)
	}
	defer sock.Close()
	if err := serve(puller, sock); err != nil {
		panic(err)
	}
	// Output:
}

// TestOperationsDocBlock: the Go block of docs/operations.md is serve's body.
func TestOperationsDocBlock(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	const name = "metrics-go" // cmd/zpeer's TestDocCodeBlocksRunOrAreFragments looks for the quoted name
	d := string(doc)
	begin, end := "<!-- begin "+name+" -->\n```go\n", "```\n<!-- end "+name+" -->"
	i, j := strings.Index(d, begin), strings.Index(d, end)
	if i < 0 || j < i {
		t.Fatal("no " + name + " block in docs/operations.md")
	}
	block := d[i+len(begin) : j]
	var body strings.Builder
	for _, l := range strings.Split(strings.TrimRight(block, "\n"), "\n") {
		body.WriteString("\t" + l + "\n")
	}
	if !strings.Contains(string(src), "sock *socket.Socket) error {\n"+body.String()+"\treturn nil\n}") {
		t.Errorf("docs/operations.md's metrics-go block is not serve's body:\n%s", block)
	}
}
