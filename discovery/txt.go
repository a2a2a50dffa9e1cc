package discovery

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The TXT schema, version 1. docs/discovery.md is the reference; keep both
// in step. Every entry is "key=value" and at most 255 bytes.
//
//	zpeer=1          schema marker and version (first entry)
//	node=<id>        node id of the announcing process
//	type=<TYPE>      socket type, upper case
//	rev=<n>          revision, incremented on every change
//	ep=<endpoint>    first endpoint; ep2=, ep3=... for more
//	curve=<Z85>      a CURVE server's long-term public key (40 characters)
//	<key>=<value>    application metadata
const (
	schemaKey     = "zpeer"
	schemaVersion = "1"

	maxTXTEntry  = 255
	maxTXTRecord = 1300
	maxEndpoints = 16
)

var errNotZpeer = errors.New("discovery: TXT is not a zpeer schema 1 record")

// txtData is the decoded form of an announcement's TXT record.
type txtData struct {
	node      string
	typ       string
	rev       uint64
	endpoints []string
	curve     string // Z85 CURVE public key, "" when none (or malformed)
	meta      map[string]string
}

// endpointKey returns the TXT key of the i-th endpoint: ep, ep2, ep3...
func endpointKey(i int) string {
	if i == 0 {
		return "ep"
	}
	return "ep" + strconv.Itoa(i+1)
}

// reservedKey reports whether a key belongs to the schema. Application
// metadata may not use it. Keys are compared case-insensitively, as
// RFC 6763 section 6.4 says.
func reservedKey(k string) bool {
	k = strings.ToLower(k)
	switch k {
	case "node", "type", "rev", "curve":
		return true
	}
	if strings.HasPrefix(k, schemaKey) {
		return true
	}
	if rest, ok := strings.CutPrefix(k, "ep"); ok {
		for i := 0; i < len(rest); i++ {
			if rest[i] < '0' || rest[i] > '9' {
				return false
			}
		}
		return true
	}
	return false
}

// checkMeta validates application metadata keys and the size of each
// entry.
func checkMeta(meta map[string]string) error {
	seen := make(map[string]bool, len(meta))
	for k, v := range meta {
		if k == "" {
			return fmt.Errorf("%w: empty key", ErrInvalidMeta)
		}
		for i := 0; i < len(k); i++ {
			if k[i] < 0x20 || k[i] > 0x7e || k[i] == '=' {
				return fmt.Errorf("%w: key %q: only printable ASCII without '='", ErrInvalidMeta, k)
			}
		}
		if reservedKey(k) {
			return fmt.Errorf("%w: key %q is reserved by the TXT schema", ErrInvalidMeta, k)
		}
		lk := strings.ToLower(k)
		if seen[lk] {
			return fmt.Errorf("%w: key %q given twice (keys ignore case)", ErrInvalidMeta, k)
		}
		seen[lk] = true
		if n := len(k) + 1 + len(v); n > maxTXTEntry {
			return fmt.Errorf("%w: %q is %d bytes", ErrTXTTooLong, k+"=...", n)
		}
	}
	return nil
}

// encodeTXT builds the TXT strings of an announcement: schema entries
// first, then metadata sorted by key.
func encodeTXT(d txtData) ([]string, error) {
	if len(d.endpoints) > maxEndpoints {
		return nil, fmt.Errorf("%w: %d endpoints, at most %d", ErrInvalidEndpoint, len(d.endpoints), maxEndpoints)
	}
	if err := checkMeta(d.meta); err != nil {
		return nil, err
	}
	txt := []string{
		schemaKey + "=" + schemaVersion,
		"node=" + d.node,
		"type=" + d.typ,
		"rev=" + strconv.FormatUint(d.rev, 10),
	}
	for i, ep := range d.endpoints {
		txt = append(txt, endpointKey(i)+"="+ep)
	}
	if d.curve != "" {
		txt = append(txt, "curve="+d.curve)
	}
	keys := make([]string, 0, len(d.meta))
	for k := range d.meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		txt = append(txt, k+"="+d.meta[k])
	}
	total := 0
	for _, s := range txt {
		if len(s) > maxTXTEntry {
			return nil, fmt.Errorf("%w: %.40q... is %d bytes", ErrTXTTooLong, s, len(s))
		}
		total += 1 + len(s)
	}
	if total > maxTXTRecord {
		return nil, fmt.Errorf("%w: %d bytes", ErrTXTTooLarge, total)
	}
	return txt, nil
}

// decodeTXT parses an mDNS announcement's TXT record. It returns
// errNotZpeer unless the record carries zpeer=1 with a node id and a valid
// socket type.
func decodeTXT(txt []string) (txtData, error) {
	d, ok := parseTXT(txt)
	if !ok || d.node == "" || !socketTypes[d.typ] {
		return d, errNotZpeer
	}
	return d, nil
}

// parseTXT reads whatever zpeer schema entries a TXT record holds; ok is
// false unless it carries zpeer=1. The first occurrence of a key wins
// (RFC 6763 section 6.4); unknown schema-reserved keys are skipped so that
// later minor revisions can add them; endpoints that do not parse are
// dropped.
func parseTXT(txt []string) (d txtData, ok bool) {
	seen := make(map[string]bool, len(txt))
	eps := make(map[int]string)
	for _, s := range txt {
		if s == "" {
			continue
		}
		k, v, _ := strings.Cut(s, "=")
		lk := strings.ToLower(k)
		if k == "" || seen[lk] {
			continue
		}
		seen[lk] = true
		switch {
		case lk == schemaKey:
			if v != schemaVersion {
				return d, false
			}
		case lk == "node":
			d.node = v
		case lk == "type":
			d.typ = strings.ToUpper(v)
		case lk == "rev":
			d.rev, _ = strconv.ParseUint(v, 10, 64)
		case lk == "ep":
			eps[0] = v
		case lk == "curve":
			if validCurveKey(v) {
				d.curve = v
			}
		case strings.HasPrefix(lk, "ep") && reservedKey(lk):
			if n, err := strconv.Atoi(lk[2:]); err == nil && n >= 2 && n <= maxEndpoints {
				eps[n-1] = v
			}
		case reservedKey(lk):
			// A key of a later minor schema revision.
		default:
			if d.meta == nil {
				d.meta = make(map[string]string)
			}
			d.meta[k] = v
		}
	}
	if !seen[schemaKey] {
		return d, false
	}
	for i := 0; i < maxEndpoints; i++ {
		ep, ok := eps[i]
		if !ok {
			break
		}
		if checkEndpoint(ep) == nil {
			d.endpoints = append(d.endpoints, ep)
		}
	}
	return d, true
}

// z85Chars is the Z85 alphabet (ZeroMQ RFC 32).
const z85Chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

// validCurveKey reports whether s looks like a Z85 CURVE public key: 40
// characters of the Z85 alphabet. (Whether it is a key anyone holds is for
// the CURVE handshake to prove.)
func validCurveKey(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(z85Chars, s[i]) < 0 {
			return false
		}
	}
	return true
}
