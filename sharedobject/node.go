// Package sharedobject serves remote shared objects: named, versioned sets of JSON slots that clients
// change through the server and that every subscriber, on every node, is told about. The log of each object
// lives in JetStream; this package is the authority in front of it and the WebSocket handler for /so.
package sharedobject

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rso-server/rso/internal/ids"
)

// Names of what the service keeps in NATS (docs/PROTOCOL.md §2).
const (
	streamPersistent = "RSO_PERSISTENT"
	streamTemporary  = "RSO_TEMPORARY"
	bucketInterest   = "RSO_TEMP_INTEREST" // temporary object × node that has subscribers for it
	bucketNodes      = "RSO_NODES"         // live nodes, each refreshed every heartbeat
	bucketHooks      = "RSO_HOOKS"         // validation hooks
)

const (
	heartbeat   = 5 * time.Second
	nodeTTL     = 3 * heartbeat // a node silent this long is dead and its interest no longer counts
	resetTTL    = time.Minute   // how long a temporary object's reset marker stays in the log
	natsTimeout = 5 * time.Second
)

var errConflict = errors.New("another node committed first")

// Node is one server process's share of the shared-object service. Several nodes on one NATS behave as one.
type Node struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	cfg   Config
	id    string // also the KV key of this node
	log   *slog.Logger
	hooks *hookTable

	interest jetstream.KeyValue
	nodes    jetstream.KeyValue

	ctx    context.Context // ends at Shutdown, after the writes in flight are done
	cancel context.CancelFunc
	wg     sync.WaitGroup // writers and background loops

	closing  atomic.Bool
	mu       sync.Mutex
	objects  map[objKey]*object
	sessions map[*session]struct{}
	apiSubs  []*nats.Subscription
	stopOnce sync.Once
	done     chan struct{}

	helloOnce   sync.Once
	helloLimits []byte // the "limits" object of every hello frame (the limits do not change)
}

// NewNode creates (or checks) the JetStream streams and buckets it needs and starts serving the bus API.
func NewNode(ctx context.Context, nc *nats.Conn, cfg Config) (*Node, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "node-" + randomID(6)
	}
	if need := int64(cfg.Limits.MaxObjectBytes) + 256<<10; nc.MaxPayload() < need {
		return nil, fmt.Errorf("sharedobject: NATS max_payload is %d bytes but objects of -max-object-bytes %d need %d; raise max_payload on the NATS server or lower -max-object-bytes",
			nc.MaxPayload(), cfg.Limits.MaxObjectBytes, need)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	n := &Node{
		nc: nc, js: js, cfg: cfg, id: ids.Safe(cfg.NodeID), log: cfg.Logger,
		objects: map[objKey]*object{}, sessions: map[*session]struct{}{}, done: make(chan struct{}),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.setup(ctx); err != nil {
		n.cancel()
		return nil, err
	}
	// Entries republished while the connection was down are lost to this node: refill every replica.
	prev := nc.Opts.ReconnectedCB
	nc.SetReconnectHandler(func(c *nats.Conn) {
		if prev != nil {
			prev(c)
		}
		n.catchUpAll()
	})
	n.wg.Add(1)
	go n.heartbeatLoop()
	return n, nil
}

func (n *Node) catchUpAll() {
	n.mu.Lock()
	objects := make([]*object, 0, len(n.objects))
	for _, o := range n.objects {
		objects = append(objects, o)
	}
	n.mu.Unlock()
	for _, o := range objects {
		select {
		case <-o.ready:
		default:
			continue // still loading: it reads the log anyway
		}
		o.mu.Lock()
		if err := o.catchUpLocked(n.ctx); err != nil {
			n.log.Warn("catch-up after reconnect failed", "obj", o.key.name, "err", err)
		}
		o.mu.Unlock()
	}
}

func (n *Node) setup(ctx context.Context) error {
	for _, sc := range []jetstream.StreamConfig{
		{Name: streamPersistent, Subjects: []string{"rso.so.p.*"}, Storage: jetstream.FileStorage},
		{Name: streamTemporary, Subjects: []string{"rso.so.t.*"}, Storage: jetstream.MemoryStorage, AllowMsgTTL: true},
	} {
		sc.Replicas = n.cfg.Replicas
		sc.AllowRollup = true
		sc.AllowDirect = true
		sc.MaxMsgSize = -1
		sc.Discard = jetstream.DiscardOld
		src := sc.Subjects[0]
		sc.RePublish = &jetstream.RePublish{Source: src, Destination: "rso.ev." + src[len("rso.so."):len(src)-1] + "{{wildcard(1)}}"}
		if _, err := n.js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("sharedobject: cannot create stream %s: %w", sc.Name, err)
		}
	}
	var err error
	if n.interest, err = n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucketInterest, Storage: jetstream.MemoryStorage, Replicas: n.cfg.Replicas}); err != nil {
		return fmt.Errorf("sharedobject: cannot create bucket %s: %w", bucketInterest, err)
	}
	if n.nodes, err = n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucketNodes, Storage: jetstream.MemoryStorage, TTL: nodeTTL, Replicas: n.cfg.Replicas}); err != nil {
		return fmt.Errorf("sharedobject: cannot create bucket %s: %w", bucketNodes, err)
	}
	if _, err := n.nodes.Put(ctx, n.id, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("sharedobject: cannot register node: %w", err)
	}
	if n.hooks, err = startHookTable(ctx, n); err != nil {
		return err
	}
	return n.serveAPI()
}

func (n *Node) streamFor(persistent bool) string {
	if persistent {
		return streamPersistent
	}
	return streamTemporary
}

// Ready reports whether the node can serve: connected to NATS and not shutting down.
func (n *Node) Ready() bool { return n.nc.IsConnected() && !n.closing.Load() }

// Shutdown stops taking frames, lets the writes in flight commit, closes every client with 1012
// (restart: reconnect) after its queued answers, and stops the bus API. Safe to call more than once.
func (n *Node) Shutdown(ctx context.Context) error {
	n.closing.Store(true)
	n.stopOnce.Do(func() {
		defer close(n.done)
		for _, s := range n.apiSubs {
			s.Unsubscribe()
		}
		idle := make(chan struct{})
		go func() { n.waitWritersIdle(); close(idle) }()
		select {
		case <-idle:
		case <-ctx.Done():
		}
		n.mu.Lock()
		sessions := make([]*session, 0, len(n.sessions))
		for s := range n.sessions {
			sessions = append(sessions, s)
		}
		n.mu.Unlock()
		for _, s := range sessions {
			s.close(closeRestart, "server restarting; reconnect")
		}
		for _, s := range sessions {
			select {
			case <-s.conn.Done():
			case <-ctx.Done():
			}
		}
		n.cancel()
		n.wg.Wait()
		n.hooks.stop()
		cleanup, cancel := context.WithTimeout(context.Background(), natsTimeout)
		defer cancel()
		n.dropInterest(cleanup)
		n.nodes.Delete(cleanup, n.id)
	})
	<-n.done
	return ctx.Err()
}

// waitWritersIdle returns once no object has writes queued or in flight.
func (n *Node) waitWritersIdle() {
	for {
		busy := false
		n.mu.Lock()
		for _, o := range n.objects {
			o.mu.Lock()
			busy = busy || o.writing
			o.mu.Unlock()
		}
		n.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// acquire returns the loaded replica of an object and counts the caller as a user until release.
func (n *Node) acquire(ctx context.Context, key objKey) (*object, error) {
	n.mu.Lock()
	o := n.objects[key]
	created := o == nil
	if created {
		o = newObject(n, key)
		n.objects[key] = o
	}
	o.mu.Lock()
	o.users++
	if o.grace != nil {
		o.grace.Stop()
		o.grace = nil
	}
	o.mu.Unlock()
	n.mu.Unlock()
	if created {
		if !key.persistent {
			n.addInterest(ctx, key)
		}
		o.load(ctx)
	}
	select {
	case <-o.ready:
	case <-ctx.Done():
		n.release(o)
		return nil, ctx.Err()
	}
	if o.loadErr != nil {
		n.mu.Lock()
		if n.objects[key] == o {
			delete(n.objects, key)
		}
		n.mu.Unlock()
		return nil, fmt.Errorf("cannot load object %q: %w", key.name, o.loadErr)
	}
	return o, nil
}

// release ends one use; an object nobody uses is dropped after the grace period (and a temporary one
// then vanishes if no other node uses it either).
func (n *Node) release(o *object) {
	n.mu.Lock()
	defer n.mu.Unlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.users--; o.users > 0 {
		return
	}
	o.grace = time.AfterFunc(n.cfg.TempGrace, func() { n.expire(o) })
}

func (n *Node) expire(o *object) {
	n.mu.Lock()
	o.mu.Lock()
	if o.users > 0 || n.objects[o.key] != o || n.closing.Load() {
		o.mu.Unlock()
		n.mu.Unlock()
		return
	}
	delete(n.objects, o.key)
	o.mu.Unlock()
	n.mu.Unlock()
	if o.liveSub != nil {
		o.liveSub.Unsubscribe()
	}
	if !o.key.persistent {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.vanishIfUnused(o)
		}()
	}
}

// addInterest records that this node has users of a temporary object, so that no other node removes it.
func (n *Node) addInterest(ctx context.Context, key objKey) {
	if _, err := n.interest.Put(ctx, key.token()+"."+n.id, nil); err != nil {
		n.log.Warn("cannot record interest in temporary object", "obj", key.name, "err", err)
	}
}

// vanishIfUnused ends a temporary object's epoch once no live node has users of it: a reset entry
// (committed only if nobody wrote since) tells every replica, and expires from the log after resetTTL.
func (n *Node) vanishIfUnused(o *object) {
	ctx, cancel := context.WithTimeout(n.ctx, natsTimeout)
	defer cancel()
	tok := o.key.token()
	n.interest.Delete(ctx, tok+"."+n.id)
	lister, err := n.interest.ListKeysFiltered(ctx, tok+".*")
	if err != nil {
		return
	}
	for k := range lister.Keys() {
		node := k[len(tok)+1:]
		if _, err := n.nodes.Get(ctx, node); err == nil {
			lister.Stop()
			return // in use elsewhere
		}
		n.interest.Delete(ctx, k) // that node is dead
	}
	o.mu.Lock()
	base := o.seq
	o.mu.Unlock()
	if base == 0 {
		return
	}
	n.publishOpts(ctx, o.subject, resetEntry, base, true, resetTTL)
}

// dropInterest removes this node's interest keys at shutdown, so other nodes may remove the objects.
func (n *Node) dropInterest(ctx context.Context) {
	lister, err := n.interest.ListKeysFiltered(ctx, "*."+n.id)
	if err != nil {
		return
	}
	for k := range lister.Keys() {
		n.interest.Delete(ctx, k)
	}
}

func (n *Node) heartbeatLoop() {
	defer n.wg.Done()
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(n.ctx, natsTimeout)
			if _, err := n.nodes.Put(ctx, n.id, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil && n.ctx.Err() == nil {
				n.log.Warn("node heartbeat failed", "err", err)
			}
			cancel()
		}
	}
}

// publish appends data to an object's log if the log's last entry is still expect.
func (n *Node) publish(ctx context.Context, subject string, data []byte, expect uint64, rollup bool) (uint64, error) {
	return n.publishOpts(ctx, subject, data, expect, rollup, 0)
}

func (n *Node) publishOpts(ctx context.Context, subject string, data []byte, expect uint64, rollup bool, ttl time.Duration) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if rollup {
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	}
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(expect)}
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	ack, err := n.js.PublishMsg(ctx, m, opts...)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, errConflict
		}
		return 0, err
	}
	return ack.Sequence, nil
}

// fetch reads the stored entries of one subject from sequence from on, in order, with batched direct gets.
func (n *Node) fetch(ctx context.Context, stream, subject string, from uint64, fn func(seq uint64, data []byte)) error {
	ctx, cancel := context.WithTimeout(ctx, 4*natsTimeout)
	defer cancel()
	inbox := n.nc.NewRespInbox()
	sub, err := n.nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	const batch = 512
	for {
		req, _ := json.Marshal(map[string]any{"next_by_subj": subject, "seq": from, "batch": batch})
		if err := n.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, req); err != nil {
			return err
		}
		more := false
		for {
			m, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				return fmt.Errorf("reading the log of %s: %w", subject, err)
			}
			switch status := m.Header.Get("Status"); status {
			case "":
			case "404":
				return nil
			case "204": // end of batch
				pending, _ := parseUint(m.Header.Get("Nats-Num-Pending"))
				more = pending > 0
			default:
				return fmt.Errorf("reading the log of %s: status %s %s", subject, status, m.Header.Get("Description"))
			}
			if m.Header.Get("Status") == "204" {
				break
			}
			seq, err := parseUint(m.Header.Get("Nats-Sequence"))
			if err != nil {
				return fmt.Errorf("reading the log of %s: bad sequence header", subject)
			}
			fn(seq, m.Data)
			from = seq + 1
		}
		if !more {
			return nil
		}
	}
}

// lastSeq returns the sequence of the last stored entry of a subject (0 when none).
func (n *Node) lastSeq(ctx context.Context, stream, subject string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	m, err := n.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream, req)
	if err != nil {
		return 0, err
	}
	if m.Header.Get("Status") == "404" {
		return 0, nil
	}
	return parseUint(m.Header.Get("Nats-Sequence"))
}

func parseUint(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) }

func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func newEpoch() string { return randomID(6) }
