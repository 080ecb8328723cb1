package messaging

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rso-server/rso/internal/chatbus"
	"github.com/rso-server/rso/internal/ids"
	"github.com/rso-server/rso/internal/jsread"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/p2p/internal/proto"
)

// Presence follows the seed's login flow. A relay tells the service when a user's connection opens on a
// node (hello) and when the user's last connection on that node has been gone for the grace period (bye).
// The service keeps one record per user in RSO_PRESENCE — the nodes the user is connected to and the
// status — changed by compare-and-set, so that concurrent changes from several nodes and instances cannot
// lose one another and exactly one of them sees each transition. On a transition (offline → online,
// online ↔ away, → offline) the service gets the user's friends (cache, or the friends service) and
// publishes the new status on each friend's delivery subject, which reaches the friend on whatever node it
// is connected to. Every presence frame carries the record's revision, so a client can drop stale ones.
//
// A relay node that dies sends no bye. Each node refreshes its key in RSO_RELAY_NODES (which has a TTL);
// each service instance looks every SweepInterval for nodes that have users (h.<node>) but no key, and
// takes their users offline (n.<node>.<user> lists them). A node that was only cut off and comes back
// announces its users again.
//
// A node that comes back while an instance is still sweeping it must not lose its users to that sweep.
// The node writes its key before it announces anyone again, so the sweep reads the key again for each user,
// between reading the user's record and its compare-and-set; and every hello rewrites the markers and the
// record even when the record already lists the node, so that a sweep which read the record before the
// hello loses its compare-and-set, reads again and sees the key. Markers are removed only at the revision
// read before the record changed: one rewritten meanwhile by a hello stays.

// presenceRecord is the value of u.<user>.
type presenceRecord struct {
	Status string   `json:"status"`
	Nodes  []string `json:"nodes"`
	At     int64    `json:"at"` // ms since the epoch of the last change (the "last seen" of an offline user)
}

// markerTTL is how long the marks of removed node markers stay in RSO_PRESENCE before they vanish.
const markerTTL = time.Minute

// onHello: a connection opened. The user becomes known, and online on that node. The reply carries the
// limits the relay adds to its hello frame.
func (s *Service) onHello(ctx context.Context, m *nats.Msg) {
	var r chatbus.Presence
	if json.Unmarshal(m.Data, &r) != nil || r.User == "" || !ids.Valid(r.Node, maxNodeIDBytes) {
		proto.RespondJSON(m, chatbus.Reply{Error: wire.Errorf(wire.CodeBadFrame, "hello needs user and node")})
		return
	}
	if werr := s.ensureKnown(ctx, r.User); werr != nil {
		proto.RespondJSON(m, chatbus.Reply{Error: werr})
		return
	}
	if werr := s.presenceUp(ctx, r.User, r.Node); werr != nil {
		proto.RespondJSON(m, chatbus.Reply{Error: werr})
		return
	}
	proto.RespondJSON(m, chatbus.Reply{Limits: &chatbus.ServiceLimits{
		DuplicateWindowMs: s.cfg.DuplicateWindow.Milliseconds(),
		FriendsOnly:       s.cfg.FriendsOnly,
		HistoryLimit:      s.cfg.HistoryLimit,
		MaxHistoryLimit:   s.cfg.MaxHistoryLimit,
		MaxMessageBytes:   s.cfg.MaxMessageBytes,
		SyncMaxMessages:   s.cfg.SyncMaxMessages,
	}})
}

// onBye: the user's last connection on a node is gone.
func (s *Service) onBye(ctx context.Context, m *nats.Msg) {
	var r chatbus.Presence
	if json.Unmarshal(m.Data, &r) != nil || r.User == "" || !ids.Valid(r.Node, maxNodeIDBytes) {
		proto.RespondJSON(m, chatbus.Reply{Error: wire.Errorf(wire.CodeBadFrame, "bye needs user and node")})
		return
	}
	if _, werr := s.presenceDown(ctx, r.User, r.Node, false); werr != nil {
		proto.RespondJSON(m, chatbus.Reply{Error: werr})
		return
	}
	proto.RespondJSON(m, chatbus.Reply{})
}

// presenceUp puts node in user's record. The markers go first (whoever finds the user on this node can
// then find the node's users), and both they and the record are written even when the record lists the
// node already: a sweep of this node that began before the node came back may be about to remove it (see
// above), and the write makes its compare-and-set fail.
func (s *Service) presenceUp(ctx context.Context, user, node string) *wire.Error {
	if _, err := s.presence.Put(ctx, nodeHasUsersKey(node), []byte(node)); err != nil {
		return proto.Unavailable("cannot record presence", err)
	}
	if _, err := s.presence.Put(ctx, nodeMarkerKey(node, user), []byte(user)); err != nil {
		return proto.Unavailable("cannot record presence", err)
	}
	return s.changePresence(ctx, user, func(r *presenceRecord) bool {
		if !slices.Contains(r.Nodes, node) {
			if len(r.Nodes) == 0 {
				r.Status = StatusOnline
			}
			r.Nodes = append(r.Nodes, node)
			slices.Sort(r.Nodes)
		}
		return true // written even if unchanged: a new revision for a sweep that read the old one
	})
}

// errNodeBack stops a sweep's change: the node's key is there again.
var errNodeBack = errors.New("node is back")

// presenceDown removes node from user's record and then the user's marker on that node, unless a hello
// rewrote the marker meanwhile. sweeping (the node's key was missing): the key is read again between
// reading the record and changing it, and if it is back nothing is changed and back is true.
func (s *Service) presenceDown(ctx context.Context, user, node string, sweeping bool) (back bool, werr *wire.Error) {
	var markerRev uint64 // the marker's revision read before the record changed; 0: no marker
	var checkErr error
	werr = s.changePresence(ctx, user, func(r *presenceRecord) bool {
		markerRev = 0
		if e, err := s.presence.Get(ctx, nodeMarkerKey(node, user)); err == nil {
			markerRev = e.Revision()
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			checkErr = err
			return false
		}
		if sweeping {
			if _, err := s.nodes.Get(ctx, node); err == nil {
				checkErr = errNodeBack
				return false
			} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
				checkErr = err
				return false
			}
		}
		i := slices.Index(r.Nodes, node)
		if i < 0 {
			return false
		}
		r.Nodes = slices.Delete(r.Nodes, i, i+1)
		if len(r.Nodes) == 0 {
			r.Status = StatusOffline
		}
		return true
	})
	switch {
	case werr != nil:
		return false, werr
	case errors.Is(checkErr, errNodeBack):
		return true, nil
	case checkErr != nil:
		return false, proto.Unavailable("cannot read presence", checkErr)
	}
	if markerRev != 0 {
		// Fails (harmlessly) if a hello rewrote the marker since: the user is back on the node.
		s.presence.Purge(ctx, nodeMarkerKey(node, user), jetstream.PurgeTTL(markerTTL), jetstream.LastRevision(markerRev))
	}
	return false, nil
}

// setStatus answers a presence frame: "away" or back "online".
func (s *Service) setStatus(ctx context.Context, c caller, f *request) ([]byte, *wire.Error) {
	werr := s.changePresence(ctx, c.user, func(r *presenceRecord) bool {
		if len(r.Nodes) == 0 || r.Status == f.status {
			return false // not connected as far as the record knows (a late frame), or no change
		}
		r.Status = f.status
		return true
	})
	if werr != nil {
		return nil, werr
	}
	return okFrame(f.id), nil
}

func (s *Service) loadPresence(ctx context.Context, user string) (presenceRecord, uint64, error) {
	e, err := s.presence.Get(ctx, presenceKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return presenceRecord{Status: StatusOffline}, 0, nil
	}
	if err != nil {
		return presenceRecord{}, 0, err
	}
	var r presenceRecord
	if json.Unmarshal(e.Value(), &r) != nil || r.Status == "" {
		r = presenceRecord{Status: StatusOffline}
	}
	return r, e.Revision(), nil
}

// changePresence applies change to user's record with compare-and-set and tells the friends when the
// status changed. change returns false when there is nothing to do.
func (s *Service) changePresence(ctx context.Context, user string, change func(*presenceRecord) bool) *wire.Error {
	for range proto.MaxRetries {
		rec, rev, err := s.loadPresence(ctx, user)
		if err != nil {
			return proto.Unavailable("cannot read presence", err)
		}
		was, wasNodes := rec.Status, rec.Nodes
		rec.Nodes = slices.Clone(rec.Nodes)
		if !change(&rec) {
			return nil
		}
		if rec.Status != was || !slices.Equal(rec.Nodes, wasNodes) {
			rec.At = time.Now().UnixMilli()
		}
		b, _ := json.Marshal(rec)
		newRev, err := s.presence.Update(ctx, presenceKey(user), b, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			return proto.Unavailable("cannot record presence", err)
		}
		if rec.Status != was {
			s.m.presenceChange(rec.Status)
			s.notifyPresence(ctx, user, rec.Status, newRev)
		}
		return nil
	}
	return wire.Errorf(wire.CodeBusy, "presence of %q changed too often at once; retry", proto.Clip(user))
}

// notifyPresence publishes user's new status to each friend's delivery subject.
func (s *Service) notifyPresence(ctx context.Context, user, status string, rev uint64) {
	e, werr := s.friendsOf(ctx, user)
	if werr != nil {
		s.log.Warn("presence not sent: no friend list", "user", user, "err", werr)
		return
	}
	frame := presenceFrame(user, status, rev)
	for _, f := range e.list.Friends {
		s.publishTo(f, frame, "", "")
	}
}

// presenceOf reads the status of users (pipelined); a user without a record is offline with rev 0.
func (s *Service) presenceOf(ctx context.Context, users []string) []presenceItem {
	out := make([]presenceItem, len(users))
	subjects := make([]string, len(users))
	for i, u := range users {
		out[i] = presenceItem{User: u, Status: StatusOffline}
		subjects[i] = "$KV." + bucketPres + "." + presenceKey(u)
	}
	msgs, err := jsread.LastMany(ctx, s.nc, "KV_"+bucketPres, subjects)
	if err != nil {
		s.log.Warn("cannot read friends' presence", "err", err)
		return out
	}
	for i, m := range msgs {
		var r presenceRecord
		if m == nil || m.Deleted || json.Unmarshal(m.Data, &r) != nil || r.Status == "" {
			continue
		}
		out[i].Status, out[i].Rev = r.Status, m.Seq
	}
	return out
}

// sweepLoop takes the users of dead relay nodes offline.
func (s *Service) sweepLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// sweep finds nodes that have users but no live key and sweeps each.
func (s *Service) sweep() {
	ctx, cancel := context.WithTimeout(s.ctx, 4*proto.NATSTimeout)
	defer cancel()
	lister, err := s.presence.ListKeysFiltered(ctx, "h.*")
	if err != nil {
		if s.ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
			s.log.Warn("presence sweep: cannot list nodes", "err", err)
		}
		return
	}
	var nodes []string
	for k := range lister.Keys() {
		nodes = append(nodes, strings.TrimPrefix(k, "h."))
	}
	for _, node := range nodes {
		if _, err := s.nodes.Get(ctx, node); errors.Is(err, jetstream.ErrKeyNotFound) {
			s.sweepNode(ctx, node)
		}
	}
}

// sweepNode takes every user of a dead node offline there. Several instances may sweep the same node at
// once; the compare-and-set on each record makes that harmless. It stops as soon as the node's key is
// back (the node announces its users again).
func (s *Service) sweepNode(ctx context.Context, node string) {
	s.m.sweeps.Inc()
	users, _ := s.usersOn(ctx, node)
	for _, user := range users {
		back, werr := s.presenceDown(ctx, user, node, true)
		if werr != nil {
			s.log.Warn("presence sweep: cannot take user offline", "node", node, "user", user, "err", werr)
			return // try again next round
		}
		if back {
			s.log.Info("relay node is back; sweep stopped", "node", node)
			return
		}
	}
	// The h key goes when no marker is left, at the revision read first: a node that came back wrote its
	// key before any marker, so either the key is seen here or the rewritten h key survives the purge.
	if e, err := s.presence.Get(ctx, nodeHasUsersKey(node)); err == nil {
		if _, err := s.nodes.Get(ctx, node); errors.Is(err, jetstream.ErrKeyNotFound) {
			if left, ok := s.usersOn(ctx, node); ok && len(left) == 0 {
				s.presence.Purge(ctx, nodeHasUsersKey(node), jetstream.PurgeTTL(markerTTL), jetstream.LastRevision(e.Revision()))
			}
		}
	}
	if len(users) > 0 {
		s.log.Info("relay node stopped its heartbeats; its users are offline there", "node", node, "users", len(users))
	}
}

// usersOn lists the users with a marker on node; ok is false if they could not be listed.
func (s *Service) usersOn(ctx context.Context, node string) (users []string, ok bool) {
	prefix := "n." + node + "."
	lister, err := s.presence.ListKeysFiltered(ctx, prefix+"*")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, true
	}
	if err != nil {
		return nil, false
	}
	for k := range lister.Keys() {
		if u, ok := proto.UserFromToken(strings.TrimPrefix(k, prefix)); ok {
			users = append(users, u)
		}
	}
	return users, ctx.Err() == nil
}
