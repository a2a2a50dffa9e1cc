package codec

import "testing"

func TestReplyCarriesTheRequestsIdentity(t *testing.T) {
	req := Envelope{ID: NewID(), Kind: KindData, Type: "q", Priority: 7, Seq: 42, Sender: "a", Topic: "t",
		Headers: map[string]string{"k": "v"}, Body: []byte{0xc0}}
	b, err := req.AppendEncode(nil)
	if err != nil {
		t.Fatal(err)
	}
	var v View
	if err := DecodeView(b, &v); err != nil {
		t.Fatal(err)
	}
	want := Envelope{ID: req.ID, Kind: KindReply, Priority: 7, Seq: 42}
	for name, got := range map[string]Envelope{"View": v.Reply(), "Envelope": req.Reply()} {
		if got.ID != want.ID || got.Kind != want.Kind || got.Priority != want.Priority || got.Seq != want.Seq ||
			got.Type != "" || got.Sender != "" || got.Topic != "" || got.Headers != nil || got.Body != nil {
			t.Errorf("%s.Reply() = %+v, want %+v", name, got, want)
		}
	}
}
