package natsboot

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// jsAttempt bounds one JetStream account-info request of WaitJetStream.
	jsAttempt = 2 * time.Second
	// attemptFirst bounds Retry's first attempt; each next one may take twice as long, up to attemptMax.
	// The first is short because an attempt that gets no answer is usually one that never will: when
	// several clients create the same replicated stream at once (every node of a cluster starting
	// together), nats-server creates it but answers none of them (nats-io/nats-server#3677). The next
	// attempt finds the stream and is answered at once. A step that is merely slow gets more time as the
	// attempts go on.
	attemptFirst = 3 * time.Second
	attemptMax   = 15 * time.Second
	// Retry pauses a random time below pauseFirst, then below twice that, up to pauseMax. Random, so
	// that nodes that collided once (see attemptFirst) do not keep doing the same steps in lockstep.
	pauseFirst = 500 * time.Millisecond
	pauseMax   = 4 * time.Second
)

// JetStream error codes (nats-server's errors.json) that mean "not yet": the cluster is still forming.
const (
	codeClusterNoPeers       = 10005 // no suitable peers for placement (not enough members up for the replicas)
	codeClusterNotAvailable  = 10008 // JetStream system temporarily unavailable (no meta leader)
	codeClusterNotLeader     = 10009 // JetStream cluster can not handle request (leader changing)
	codeInsufficientResource = 10023 // insufficient resources (not enough members up for the replicas)
)

// NotReady reports whether err means that JetStream is not ready yet, so that the same call may succeed
// later: a request that timed out or found no responder (a stream without a leader yet), or a cluster
// still forming (no meta leader yet, too few members up for the replicas asked for, a leader changing).
func NotReady(err error) bool {
	var api *jetstream.APIError
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse): // a publish while the stream has no leader
		return true
	case errors.As(err, &api):
		switch api.ErrorCode {
		case codeClusterNoPeers, codeClusterNotAvailable, codeClusterNotLeader, codeInsufficientResource:
			return true
		}
	}
	return false
}

// Retry calls attempt until it succeeds, fails for a reason that waiting cannot fix (see NotReady), or
// ctx ends. The attempts get at most 3 s of ctx, then 6 s and so on up to 15 s; the pauses between them
// are random and grow up to 4 s. waiting, if not nil, hears each error that is retried. When ctx ends,
// Retry returns the last error that was not just ctx ending, so the caller can say what was missing.
func Retry(ctx context.Context, attempt func(context.Context) error, waiting func(error)) error {
	limit, pause := attemptFirst, pauseFirst
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, limit)
		err := attempt(actx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			if last == nil { // else err is most likely only ctx ending
				last = err
			}
			return last
		case !NotReady(err):
			return err
		}
		last = err
		if waiting != nil {
			waiting(err)
		}
		t := time.NewTimer(rand.N(pause))
		select {
		case <-ctx.Done():
			t.Stop()
			return last
		case <-t.C:
		}
		limit, pause = min(2*limit, attemptMax), min(2*pause, pauseMax)
	}
}

// WaitJetStream returns once JetStream answers on nc, retrying while it is not ready (a cluster electing
// its leader) until ctx ends; waiting, if not nil, hears each error that is retried. It fails at once when
// JetStream is not enabled.
func WaitJetStream(ctx context.Context, nc *nats.Conn, waiting func(error)) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	where := nc.ConnectedUrlRedacted()
	err = Retry(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, jsAttempt)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	}, waiting)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("JetStream is not enabled for this account on the NATS server at %s: enable it for the account in the server's config", where)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return fmt.Errorf("JetStream is not enabled on the NATS server at %s: start nats-server with -js (or jetstream {} in its config)", where)
	case ctx.Err() != nil || NotReady(err):
		return fmt.Errorf("JetStream on the NATS server at %s did not answer: %s", where, reason(err))
	default:
		return fmt.Errorf("JetStream on the NATS server at %s: %w", where, err)
	}
}

// ClusterState is what a clustered embedded server knows of its JetStream cluster.
type ClusterState struct {
	Peers  int    // members connected, this one included
	Size   int    // members the JetStream meta group expects; 0 while it does not know yet
	Leader string // the server name of the JetStream meta leader; "" while none is elected
}

// Cluster reports the state of s's cluster; ok is false when s is not a member of a cluster.
func Cluster(s *server.Server) (st ClusterState, ok bool) {
	if !s.JetStreamIsClustered() {
		return ClusterState{}, false
	}
	st.Peers = 1
	if rz, err := s.Routez(&server.RoutezOptions{}); err == nil {
		seen := map[string]bool{}
		for _, r := range rz.Routes {
			if r.RemoteID != "" && !seen[r.RemoteID] { // with route pooling, one member has several routes
				seen[r.RemoteID] = true
				st.Peers++
			}
		}
	}
	if jz, err := s.Jsz(&server.JSzOptions{}); err == nil && jz.Meta != nil {
		st.Size, st.Leader = jz.Meta.Size, jz.Meta.Leader
	}
	return st, true
}

// String says what the cluster still lacks: "2 of 3 peers connected, no meta leader yet".
func (st ClusterState) String() string {
	peers := fmt.Sprintf("%d peers connected", st.Peers)
	if st.Peers == 1 {
		peers = "1 peer connected"
	}
	if st.Size > 0 {
		peers = fmt.Sprintf("%d of %d peers connected", st.Peers, st.Size)
	}
	if st.Leader == "" {
		return peers + ", no JetStream meta leader yet"
	}
	return peers + ", JetStream meta leader " + st.Leader
}
