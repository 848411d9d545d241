package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/storage"
	"github.com/robust/robust/pkg/protocol"
)

// probeTimeout bounds each call of a try: a write the store does not take
// is never answered.
const probeTimeout = 3 * time.Second

// tryStore tries the store of a server someone else runs (storage.Prober):
// JetStream on, the account under its storage limit, and the state bucket
// taking a write. Whatever says the store takes no writes wraps
// storage.ErrFull.
func (s *Supervisor) tryStore(ctx context.Context) error {
	if st := s.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("the NATS store: not connected (%v)", st) // cannot tell
	}
	actx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	info, err := s.js.AccountInfo(actx)
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("%w: JetStream is off on the server (%v): nats-server turns it off when it runs out of resources, and it stays off until the server's operator turns it on again", storage.ErrFull, err)
	case err != nil:
		return fmt.Errorf("the NATS store: account info: %w", err)
	case info.Limits.MaxStore > 0 && info.Store >= uint64(info.Limits.MaxStore):
		return fmt.Errorf("%w: the account uses %d of its %d bytes of file storage", storage.ErrFull, info.Store, info.Limits.MaxStore)
	}
	b, _ := json.Marshal(struct {
		At time.Time `json:"at"`
	}{time.Now().UTC()})
	wctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err = s.kv.Put(wctx, protocol.ProbeKey, b)
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return nil
	case wctx.Err() != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("%w: the state bucket took no write within %s, though the server answers: a stream whose write failed for want of space takes none until the server restarts JetStream (see the server's log)", storage.ErrFull, probeTimeout)
	case errors.As(err, &apiErr) && apiErr.ErrorCode == natsx.ErrCodeInsufficientResources:
		return fmt.Errorf("%w: %v", storage.ErrFull, err)
	}
	return fmt.Errorf("the NATS store: a write: %w", err)
}
