package proto

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rso-server/rso/internal/wire"
)

// A failed NATS call that may succeed when retried is answered unavailable (the client re-sends, same id);
// anything else is internal. A resend that reaches the stream while its original is still being stored
// (seen with two of three cluster members down: nats-server answers 10158 "duplicate message id is in
// process") must be unavailable: internal tells the client not to retry, although the original may be
// stored once the quorum is back.
func TestUnavailableOnlyForWhatARetryMayFix(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{context.DeadlineExceeded, wire.CodeUnavailable},
		{fmt.Errorf("publish: %w", jetstream.ErrNoStreamResponse), wire.CodeUnavailable},
		{&jetstream.APIError{Code: 409, ErrorCode: 10158, Description: "duplicate message id is in process"}, wire.CodeUnavailable},
		{fmt.Errorf("nats: %w", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}), wire.CodeUnavailable},
		{&jetstream.APIError{Code: 500, ErrorCode: 10009, Description: "JetStream cluster can not handle request"}, wire.CodeUnavailable},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamMessageExceedsMaximum, Description: "message size exceeds maximum allowed"}, wire.CodeInternal},
		{errors.New("something else"), wire.CodeInternal},
	} {
		if got := Unavailable("the message was not stored", tc.err); got.Code != tc.want {
			t.Errorf("%v: answered %s (%s), want %s", tc.err, got.Code, got.Message, tc.want)
		}
	}
}
