package discovery

import (
	"errors"
	"slices"
	"testing"
	"time"
)

const testCurveKey = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"

func TestTXTCurveKey(t *testing.T) {
	txt, err := encodeTXT(txtData{node: "n1", typ: "REP", rev: 1, endpoints: []string{"tcp://*:5"}, curve: testCurveKey})
	if err != nil {
		t.Fatal(err)
	}
	if txt[len(txt)-1] != "curve="+testCurveKey {
		t.Fatalf("TXT %q", txt)
	}
	d, err := decodeTXT(txt)
	if err != nil || d.curve != testCurveKey || len(d.meta) != 0 {
		t.Fatalf("decoded %+v, %v", d, err)
	}
	// Malformed keys are dropped, never passed on as metadata.
	for _, bad := range []string{"short", testCurveKey + "x", "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~"} {
		d, err := decodeTXT([]string{"zpeer=1", "node=n", "type=REP", "curve=" + bad})
		if err != nil || d.curve != "" || d.meta["curve"] != "" {
			t.Errorf("curve=%q decoded as %+v (%v)", bad, d, err)
		}
	}
	if err := checkMeta(map[string]string{"Curve": "x"}); !errors.Is(err, ErrInvalidMeta) {
		t.Errorf("metadata key curve: %v", err)
	}
	if _, err := buildOptions([]Option{WithCurveKey("nope")}); !errors.Is(err, ErrInvalidMeta) {
		t.Errorf("WithCurveKey(nope): %v", err)
	}
}

// fakePeerConnector is a fakeConnector that declines peers without a
// CURVE key and records the key of the others.
type fakePeerConnector struct {
	*fakeConnector
	keys map[string]string
}

func (f *fakePeerConnector) ConnectPeer(p Peer, ep string) error {
	f.mu.Lock()
	if p.Curve == "" {
		f.calls = append(f.calls, "declined "+ep)
		f.mu.Unlock()
		return ErrDeclined
	}
	f.keys[ep] = p.Curve
	f.mu.Unlock()
	return f.Connect(ep)
}

func TestAutoConnectPeerConnector(t *testing.T) {
	w := newManualWatcher(t)
	f := &fakePeerConnector{fakeConnector: newFakeConnector(), keys: map[string]string{}}
	runAutoConnect(t, w, f, "REQ")
	now := time.Now()
	keyed := mpeer("a", "REP", "tcp://127.0.0.1:41001")
	keyed.Curve = testCurveKey
	w.seen("mdns", keyed, 1, "a1", now)
	w.seen("mdns", mpeer("b", "REP", "tcp://127.0.0.1:41002"), 1, "b1", now)
	wantConnected(t, f.fakeConnector, "tcp://127.0.0.1:41001")
	eventually(t, 2*time.Second, "the keyless peer declined", func() bool {
		return slices.Contains(f.log(), "declined tcp://127.0.0.1:41002")
	})
	f.mu.Lock()
	key := f.keys["tcp://127.0.0.1:41001"]
	f.mu.Unlock()
	if key != testCurveKey {
		t.Fatalf("connected with key %q", key)
	}
	// A new key at the same endpoint reconnects.
	other := keyed
	other.Curve = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
	w.seen("mdns", other, 2, "a2", now)
	eventually(t, 2*time.Second, "reconnect with the new key", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.keys["tcp://127.0.0.1:41001"] == other.Curve && f.conns["tcp://127.0.0.1:41001"]
	})
}
