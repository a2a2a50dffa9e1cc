package pattern

import (
	"context"
	"log/slog"
	"reflect"

	"github.com/zpeer/zpeer/codec"
)

// logUnknownKeys logs, at debug level, a key of a received struct body that
// T has no field for: such a body decodes without an error, its unknown
// keys skipped, so a sender and a receiver that disagree on field names
// (a missing `msgpack` or `json` tag, a typo) see zero values and nothing
// else. It costs a second decode, paid only when debug logging is on.
func logUnknownKeys[T any](o *options, body []byte) {
	if !o.logger.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	t := reflect.TypeFor[T]()
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	if key := codec.UnknownField(body, new(T)); key != "" {
		o.logger.Debug("pattern: received body has a key the receiving type has no field for",
			"key", key, "type", t.String())
	}
}
