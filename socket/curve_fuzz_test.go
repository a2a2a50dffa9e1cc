package socket

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
)

// FuzzCurveHandshake feeds arbitrary bytes to the server side of the CURVE
// greeting and handshake, as a client's stream: it must fail cleanly (never
// panic, never read past a command it refused) whatever arrives. The seeds
// are a real client's greeting and HELLO, followed by a valid-looking and a
// mangled INITIATE.
func FuzzCurveHandshake(f *testing.F) {
	server := KeyPairFromSecret(mustSecret(f, testServerSecret))
	client := KeyPairFromSecret(mustSecret(f, testClientSecret))
	g := greeting("CURVE", false)
	hello := recordHello(f, server.Public, client)
	f.Add(append(g[:], hello...))
	initiate := zmtpFrame(flagCommand, append([]byte("\x08INITIATE"), make([]byte, 300)...))
	f.Add(append(append(g[:], hello...), initiate...))
	f.Add(append(append(g[:], hello...), longHeader(flagCommand, 1<<40)...))
	f.Add(append(g[:], zmtpFrame(flagCommand, append([]byte("\x05HELLO\x01\x00"), make([]byte, 192)...))...))
	null := greeting("NULL", false)
	f.Add(null[:])
	f.Fuzz(func(t *testing.T, data []byte) {
		h := &hsIO{br: bufio.NewReader(bytes.NewReader(data)), w: io.Discard}
		if err := h.exchangeGreeting("CURVE", true); err != nil {
			return
		}
		codec, pm, _, err := curveServer(h, &server, ourMeta(nil, REP, nil), nil)
		if err == nil {
			// Only a client holding a key pair gets here; fuzzed bytes
			// cannot open the WELCOME box's reply.
			t.Fatalf("handshake succeeded on fuzzed input: %+v %v", pm, codec != nil)
		}
	})
}

func mustSecret(tb testing.TB, s string) SecretKey {
	k, err := ParseSecretKey(s)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// recordHello returns the HELLO frame a real client sends to server.
func recordHello(tb testing.TB, server Key, kp KeyPair) []byte {
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		h := &hsIO{br: bufio.NewReader(b), w: b}
		curveClient(h, &server, &kp, ourMeta(nil, REQ, nil))
		b.Close()
	}()
	br := bufio.NewReader(a)
	frame := make([]byte, 2+curveHelloSize)
	if _, err := io.ReadFull(br, frame); err != nil {
		tb.Fatal(err)
	}
	return frame
}
