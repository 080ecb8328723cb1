// Package sharedobject serves remote shared objects: named, versioned sets of JSON slots that clients
// change through the server and that every subscriber, on every node, is told about. The log of each object
// lives in JetStream; this package is the authority in front of it and the WebSocket handler for /so.
package sharedobject

import (
	"context"
	"crypto/rand"
	"encoding/base64"
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
	"github.com/rso-server/rso/internal/jsread"
	"github.com/rso-server/rso/internal/natslink"
	"github.com/rso-server/rso/internal/ratelog"
	"github.com/rso-server/rso/sharedobject/internal/model"
)

// Names of what the service keeps in NATS (docs/PROTOCOL.md §2).
const (
	streamPersistent = "RSO_PERSISTENT"
	streamTemporary  = "RSO_TEMPORARY"
	bucketInterest   = "RSO_TEMP_INTEREST" // temporary object × node that has subscribers for it
	bucketNodes      = "RSO_NODES"         // live nodes, each refreshed every heartbeat
)

const (
	// snapshotOverhead is the room a snapshot needs beyond the object's bytes and its remembered requests
	// (versions, quoting, tombstones).
	snapshotOverhead = 256 << 10
	// maxRememberedBytes caps the default bound of an object's memory of request ids.
	maxRememberedBytes = 4 << 20
	// maxAPIHandlers bounds the server-API requests one node works on at once; more are answered busy.
	maxAPIHandlers = 256
	// catchUpRetry bounds the wait between attempts to refill the replicas after a NATS reconnect.
	catchUpRetry = 2 * time.Second
	// maxParallelCatchUps bounds the replicas reading their logs at once after a reconnect.
	maxParallelCatchUps = 8
	// alarmBurst lines of one kind are logged at once, then one per alarmEvery; the rest are counted.
	alarmBurst = 20
	alarmEvery = 5 * time.Second
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
	met   *nodeMetrics
	// alarms writes what clients and backends can cause many times (refused tokens, abuse, slow
	// consumers, hook failures), rate-limited.
	alarms *ratelog.Logger

	interest jetstream.KeyValue
	nodes    jetstream.KeyValue
	apiSlots chan struct{} // one per server-API request in progress

	// link ends when the NATS connection drops, so that reads and publishes in flight fail at once
	// instead of waiting out their timeouts; a reconnect starts a new one.
	linkMu     sync.Mutex
	link       context.Context
	linkCancel context.CancelFunc
	unwatch    func() // stops watching the connection's status
	// streamBorn is when each stream was created, as last seen: a stream created again (a memory stream
	// lost with its NATS server) holds none of what the replicas applied, and they start over.
	streamBorn map[string]time.Time

	beforeFetch      func(subject string) // tests: runs before each log read
	beforeRegister   func()               // tests: runs between a session's upgrade and its registration
	afterVanishCheck func(obj string)     // tests: runs once a dropped temporary object was removed or kept

	ctx    context.Context // ends at Shutdown, after the writes in flight are done
	cancel context.CancelFunc
	wg     sync.WaitGroup // writers and background loops

	started  time.Time
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
	if cfg.Limits.MaxRememberedBytes == 0 {
		cfg.Limits.MaxRememberedBytes = max(rememberedBudget(nc.MaxPayload(), cfg.Limits.MaxObjectBytes), 1)
	}
	if need := int64(cfg.Limits.MaxObjectBytes) + snapshotOverhead + int64(cfg.Limits.MaxRememberedBytes)*4/3; nc.MaxPayload() < need {
		return nil, fmt.Errorf("sharedobject: NATS max_payload is %d bytes but objects of -max-object-bytes %d need %d (with %d bytes of remembered request ids); raise max_payload on the NATS server or lower -max-object-bytes",
			nc.MaxPayload(), cfg.Limits.MaxObjectBytes, need, cfg.Limits.MaxRememberedBytes)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	n := &Node{
		nc: nc, js: js, cfg: cfg, id: ids.Safe(cfg.NodeID), log: cfg.Logger,
		objects: map[objKey]*object{}, sessions: map[*session]struct{}{}, done: make(chan struct{}),
		apiSlots: make(chan struct{}, maxAPIHandlers), streamBorn: map[string]time.Time{},
		met: newNodeMetrics(cfg.Registerer), started: time.Now(),
	}
	n.alarms = ratelog.New(n.log, alarmBurst, alarmEvery)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.link, n.linkCancel = context.WithCancel(n.ctx)
	if err := n.setup(ctx); err != nil {
		n.cancel()
		return nil, err
	}
	n.unwatch = natslink.Watch(nc, n.linkLost, n.linkBack)
	n.wg.Add(1)
	go n.heartbeatLoop()
	return n, nil
}

// linkLost ends the current link, so that reads and publishes in flight fail at once.
func (n *Node) linkLost() {
	n.linkMu.Lock()
	n.linkCancel()
	n.linkMu.Unlock()
}

// linkBack starts a new link and refills every replica: entries republished while the connection was down
// are lost to this node.
func (n *Node) linkBack() {
	n.linkMu.Lock()
	n.linkCancel()
	n.link, n.linkCancel = context.WithCancel(n.ctx)
	link := n.link
	n.linkMu.Unlock()
	if !n.track() {
		return
	}
	go func() {
		defer n.wg.Done()
		n.refill(link)
	}()
}

// currentLink is the context of the NATS connection as it is now (already done while disconnected).
func (n *Node) currentLink() context.Context {
	n.linkMu.Lock()
	defer n.linkMu.Unlock()
	return n.link
}

// loadedObjects is a copy of the node's objects, to visit without holding n.mu (which never waits on an
// object's lock).
func (n *Node) loadedObjects() []*object {
	n.mu.Lock()
	defer n.mu.Unlock()
	all := make([]*object, 0, len(n.objects))
	for _, o := range n.objects {
		all = append(all, o)
	}
	return all
}

// track counts a background goroutine unless the node is shutting down.
func (n *Node) track() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closing.Load() {
		return false
	}
	n.wg.Add(1)
	return true
}

// refill brings every replica up to date after a reconnect: it makes sure the streams and buckets exist
// (a NATS server that kept them in memory comes back without them), starts over the replicas of a stream
// that was created again, and reads each object's log until it succeeds or the connection drops again
// (then the next reconnect refills).
func (n *Node) refill(link context.Context) {
	wait := 50 * time.Millisecond
	pause := func() bool {
		select {
		case <-link.Done():
			return false
		case <-time.After(wait):
			wait = min(2*wait, catchUpRetry)
			return true
		}
	}
	for {
		ctx, cancel := context.WithTimeout(link, natsTimeout)
		err := n.ensureStorage(ctx)
		cancel()
		if err == nil {
			break
		}
		n.log.Warn("cannot check the streams after a NATS reconnect; retrying", "err", err)
		if !pause() {
			return
		}
	}
	todo := n.loadedObjects()
	for _, o := range todo {
		if !o.key.persistent {
			ctx, cancel := context.WithTimeout(link, natsTimeout)
			n.addInterest(ctx, o.key) // the interest bucket may have been lost too
			cancel()
		}
	}
	for len(todo) > 0 {
		if todo = n.catchUpAll(link, todo); len(todo) > 0 && !pause() {
			return
		}
	}
}

// catchUpAll catches up the loaded replicas, up to maxParallelCatchUps at a time so that one slow log does
// not hold up the others, and returns those that failed.
func (n *Node) catchUpAll(link context.Context, objects []*object) (failed []*object) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxParallelCatchUps)
	for _, o := range objects {
		select {
		case <-o.ready:
		default:
			continue // still loading: it reads the log anyway
		}
		if o.loadErr != nil {
			continue
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			if err := o.catchUp(link); err != nil {
				n.log.Warn("catch-up after reconnect failed; retrying", "obj", o.key.name, "err", err)
				mu.Lock()
				failed = append(failed, o)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed
}

func (n *Node) setup(ctx context.Context) error {
	if err := n.ensureStorage(ctx); err != nil {
		return err
	}
	if _, err := n.nodes.Put(ctx, n.id, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("sharedobject: cannot register node: %w", err)
	}
	var err error
	if n.hooks, err = startHookTable(ctx, n); err != nil {
		return err
	}
	if err := n.serveAPI(); err != nil {
		return err
	}
	return n.serveAdmin()
}

// ensureStorage creates (or checks) the streams and buckets. It resets the replicas of a stream that was
// created again since it was last seen.
func (n *Node) ensureStorage(ctx context.Context) error {
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
		stream, err := n.js.CreateOrUpdateStream(ctx, sc)
		if err != nil {
			return fmt.Errorf("sharedobject: cannot create stream %s: %w", sc.Name, err)
		}
		born := stream.CachedInfo().Created
		n.mu.Lock()
		seen, known := n.streamBorn[sc.Name]
		n.streamBorn[sc.Name] = born
		n.mu.Unlock()
		if known && !seen.Equal(born) {
			n.log.Warn("stream was created again (its NATS server lost it); replicas start over", "stream", sc.Name)
			n.resetStream(sc.Name)
		}
	}
	interest, err := n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucketInterest, Storage: jetstream.MemoryStorage, Replicas: n.cfg.Replicas})
	if err != nil {
		return fmt.Errorf("sharedobject: cannot create bucket %s: %w", bucketInterest, err)
	}
	nodes, err := n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucketNodes, Storage: jetstream.MemoryStorage, TTL: nodeTTL, Replicas: n.cfg.Replicas})
	if err != nil {
		return fmt.Errorf("sharedobject: cannot create bucket %s: %w", bucketNodes, err)
	}
	if n.interest == nil { // at setup; later the handles stay (they name the buckets, which now exist again)
		n.interest, n.nodes = interest, nodes
	}
	return nil
}

// resetStream empties the replicas of every object kept in a stream that was lost: their subscribers are
// told (clear), and the catch-up that follows reads the new log from its start.
func (n *Node) resetStream(stream string) {
	for _, o := range n.loadedObjects() {
		if o.stream != stream {
			continue
		}
		o.mu.Lock()
		if o.seq != 0 || o.state.Version != 0 {
			o.resetLocked(0)
		}
		o.mu.Unlock()
	}
}

// rememberedBudget is the default bound of an object's memory: what a snapshot can carry (base64, 4/3 of
// the bytes) beside a full object and the room kept for its other parts, under NATS's max_payload.
func rememberedBudget(maxPayload int64, maxObjectBytes int) int {
	room := (maxPayload - int64(maxObjectBytes) - snapshotOverhead) * 3 / 4
	return int(max(min(room, maxRememberedBytes), 0))
}

// newState is an empty replica with this node's at-most-once settings.
func (n *Node) newState() *model.State {
	return model.NewStateWith(n.cfg.DuplicateWindow, n.cfg.Limits.MaxRememberedBytes)
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
	n.mu.Lock() // a session registers under n.mu: it is either in the list below or sees closing
	n.closing.Store(true)
	n.mu.Unlock()
	n.stopOnce.Do(func() {
		defer close(n.done)
		n.unwatch()
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
		n.alarms.Stop()
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
		for _, o := range n.loadedObjects() {
			o.mu.Lock()
			busy = busy || o.writing
			o.mu.Unlock()
		}
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
		n.met.objects.Inc()
	}
	o.users++
	if o.grace != nil {
		o.grace.Stop()
		o.grace = nil
	}
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
			n.met.objects.Dec()
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
	if o.users--; o.users > 0 {
		return
	}
	o.grace = time.AfterFunc(n.cfg.TempGrace, func() { n.expire(o) })
}

func (n *Node) expire(o *object) {
	n.mu.Lock()
	if o.users > 0 || n.objects[o.key] != o || n.closing.Load() {
		n.mu.Unlock()
		return
	}
	delete(n.objects, o.key)
	n.met.objects.Dec()
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
	if n.afterVanishCheck != nil {
		defer n.afterVanishCheck(o.key.name)
	}
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
		if alive, err := n.nodeAlive(ctx, node); err != nil || alive {
			lister.Stop()
			return // in use elsewhere (or it cannot be told: keep the object)
		}
		n.interest.Delete(ctx, k) // that node is dead
	}
	o.mu.Lock()
	base := o.seq
	o.mu.Unlock()
	if base == 0 {
		return
	}
	n.publishOpts(ctx, o.subject, model.ResetEntry, base, true, resetTTL)
}

// nodeAlive tells whether a node's heartbeat key is live, read through the bucket's stream leader: a replica
// that lags could call a live node dead, and the object it uses would be reset under its subscribers.
func (n *Node) nodeAlive(ctx context.Context, node string) (bool, error) {
	m, err := jsread.Leader(ctx, n.nc, "KV_"+bucketNodes, jsread.Query{LastBySubject: "$KV." + bucketNodes + "." + node})
	if err != nil || m == nil {
		return false, err
	}
	return !m.Deleted, nil // a delete or purge marker: gone
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
	ctx, cancel := n.linked(ctx, natsTimeout)
	defer cancel()
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if rollup {
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	}
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(expect)}
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	start := time.Now()
	ack, err := n.js.PublishMsg(ctx, m, opts...)
	n.met.publish.Observe(time.Since(start).Seconds())
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, errConflict
		}
		return 0, err
	}
	return ack.Sequence, nil
}

// fetch reads the stored entries of one subject from sequence from on, in order: with batched direct gets,
// then, on a replicated stream, from the leader until it has nothing more, so that a replica that lags
// (direct gets are answered by any replica) cannot hide an acknowledged entry.
func (n *Node) fetch(ctx context.Context, stream, subject string, from uint64, fn func(seq uint64, data []byte)) error {
	if n.beforeFetch != nil {
		n.beforeFetch(subject)
	}
	ctx, cancel := n.linked(ctx, 4*natsTimeout)
	defer cancel()
	next, err := jsread.Range(ctx, n.nc, stream, subject, from, fn)
	if err != nil || n.cfg.Replicas == 1 {
		return err // a stream of one replica is read from its leader anyway
	}
	for {
		m, err := jsread.Leader(ctx, n.nc, stream, jsread.Query{Seq: next, NextBySubject: subject})
		if err != nil || m == nil {
			return err
		}
		fn(m.Seq, m.Data)
		next = m.Seq + 1
	}
}

// lastSeq returns the sequence of the last stored entry of a subject (0 when none), as the stream leader
// has it: a replica that lags must never make a node think the log was wiped.
func (n *Node) lastSeq(ctx context.Context, stream, subject string) (uint64, error) {
	ctx, cancel := n.linked(ctx, natsTimeout)
	defer cancel()
	m, err := jsread.Leader(ctx, n.nc, stream, jsread.Query{LastBySubject: subject})
	if err != nil || m == nil {
		return 0, err
	}
	return m.Seq, nil
}

// linked bounds ctx by timeout and by the NATS connection: it ends as soon as the connection drops.
func (n *Node) linked(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	stop := context.AfterFunc(n.currentLink(), cancel)
	return ctx, func() { stop(); cancel() }
}

// errLinkLost tells whether err comes from the NATS connection dropping while waiting.
func (n *Node) errLinkLost(err error) bool {
	return errors.Is(err, context.Canceled) && n.ctx.Err() == nil
}

func parseUint(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) }

func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func newEpoch() string { return randomID(6) }
