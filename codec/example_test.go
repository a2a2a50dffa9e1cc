package codec_test

import (
	"errors"
	"fmt"

	"github.com/zpeer/zpeer/codec"
)

func ExampleEncode() {
	body, err := codec.MarshalValue(map[string]int{"qty": 3})
	if err != nil {
		panic(err)
	}
	env := codec.Envelope{
		ID:        codec.NewID(),
		Kind:      codec.KindData,
		Type:      "order.created",
		Priority:  5,
		Timestamp: 1_700_000_000_000_000_000,
		Sender:    "node-a",
		Seq:       1,
		Topic:     "orders",
		Body:      body,
	}
	// Encode into the caller's buffer, reusable for the next envelope.
	buf := make([]byte, 0, 256)
	buf, err = env.AppendEncode(buf[:0])
	if err != nil {
		panic(err)
	}
	fmt.Printf("% x\n", buf[:2])
	fmt.Println(len(buf), "bytes")
	// Output:
	// 9b 01
	// 69 bytes
}

func ExampleDecode() {
	frame, err := codec.Encode(&codec.Envelope{Type: "greeting", Sender: "node-a", Seq: 7, Body: []byte{0xa2, 'h', 'i'}})
	if err != nil {
		panic(err)
	}

	var env codec.Envelope
	if err := codec.Decode(frame, &env); err != nil { // env.Body aliases frame
		panic(err)
	}
	var text string
	if err := codec.UnmarshalValue(env.Body, &text); err != nil {
		panic(err)
	}
	fmt.Println(env.Type, env.Sender, env.Seq, text)

	err = codec.Decode(frame[:len(frame)-1], &env)
	fmt.Println(errors.Is(err, codec.ErrTooLarge), err)
	// Output:
	// greeting node-a 7 hi
	// true codec: field body: declares 3 bytes, 2 remain: codec: length exceeds input or limit
}

func ExampleLookup() {
	c, err := codec.Lookup("raw")
	if err != nil {
		panic(err)
	}
	frames, _ := c.AppendFrames(nil, &codec.Envelope{Type: "not sent", Body: []byte("plain bytes")})
	fmt.Printf("%s: %q\n", c.Name(), frames)

	_, err = codec.Lookup("json")
	fmt.Println(errors.Is(err, codec.ErrUnknownCodec), err)
	// Output:
	// raw: ["plain bytes"]
	// true codec: "json" (want msgpack or raw): codec: unknown codec
}
