//go:build !amd64 || purego || !gc

package poly1305

const hasAsm = false

func sumAsm(out *[TagSize]byte, msg []byte, key *[32]byte) {
	panic("poly1305: no assembly kernel on this platform")
}

type vecState struct{}

func (*vecState) blocks(st *macState, p []byte) {
	panic("poly1305: no assembly kernel on this platform")
}

func (*vecState) clear() {}
