package demos

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rso-server/rso/sharedobject/backend"
)

// The demos' validation hooks (docs/PROTOCOL.md §2.3). A hook is asked before a client's update to a
// matching object commits, sees the object's state that the update is judged against, and refuses the
// whole batch with one reason when any rule is broken (so a bid never commits its bidder without its
// price).
const (
	slidesHook     = "demo-slides"
	slidesPattern  = "demo/slides/**"
	auctionHook    = "demo-auction"
	auctionPattern = "demo/auction/**"
)

const (
	// maxLeaseAhead is how far ahead of the hook's clock a presenter's lease may reach: the page
	// renews it every 10 s to 30 s ahead, and this leaves room for clock skew.
	maxLeaseAhead = 2 * time.Minute
	// maxSlides bounds the slide index; the decks are built into the page.
	maxSlides = 100
	// minRound and maxRound bound an auction round (with some slack for a browser's clock).
	minRound = 5 * time.Second
	maxRound = time.Hour
	// maxPrice is the highest price a bid or a starting price may have.
	maxPrice = 1_000_000_000
	// maxItemBytes bounds an auction item's name.
	maxItemBytes = 80
	// stateWait bounds how long a hook tries to read the slots that an update does not carry.
	stateWait = time.Second
	// registerWait bounds registering the hooks when Start's context has no deadline.
	registerWait = 10 * time.Second
	// stateRetry is the pause before reading again from a replica that had not caught up.
	stateRetry = 20 * time.Millisecond
)

// Start registers the demo hooks on nc (the NATS the rso nodes use) and serves them until stop is
// called. Hooks registered by name stay in RSO_HOOKS after stop, so demo objects then refuse client
// changes (hook_unavailable) until a process serves them again.
func Start(ctx context.Context, nc *nats.Conn) (stop func(), err error) {
	return start(ctx, nc, time.Now)
}

// start is Start with the hooks' clock given (tests move it forward).
func start(ctx context.Context, nc *nats.Conn, now func() time.Time) (stop func(), err error) {
	if _, ok := ctx.Deadline(); !ok { // RegisterHook flushes NATS, which needs a deadline
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, registerWait)
		defer cancel()
	}
	h := &hooks{api: backend.NewAPI(nc), now: now}
	stopSlides, err := backend.RegisterHook(ctx, nc, slidesHook, backend.HookConfig{Pattern: slidesPattern}, h.slides)
	if err != nil {
		return nil, fmt.Errorf("demos: slideshow hook: %w", err)
	}
	stopAuction, err := backend.RegisterHook(ctx, nc, auctionHook, backend.HookConfig{Pattern: auctionPattern}, h.auction)
	if err != nil {
		stopSlides()
		return nil, fmt.Errorf("demos: auction hook: %w", err)
	}
	return func() { stopAuction(); stopSlides() }, nil
}

type hooks struct {
	api *backend.API
	now func() time.Time
}

// state is the object a hook judges. The slots an update changes come with the request (their current
// value); the others are read through the server API, at the version the request was made against or
// later (a later state means the node asks the hook again anyway).
type state struct {
	req   *backend.HookRequest
	api   *backend.API
	slots map[string]json.RawMessage // read on first need
	err   error
}

// get returns a slot's current value; ok is false when the slot does not exist or cannot be read (then
// s.err says why).
func (s *state) get(name string) (v json.RawMessage, ok bool) {
	if c := s.change(name); c != nil {
		return c.Current, c.Current != nil
	}
	if s.slots == nil && s.err == nil {
		s.slots, s.err = s.read()
	}
	v, ok = s.slots[name]
	return v, ok
}

func (s *state) change(name string) *backend.HookChange {
	for i := range s.req.Changes {
		if s.req.Changes[i].Name == name {
			return &s.req.Changes[i]
		}
	}
	return nil
}

func (s *state) read() (map[string]json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), stateWait)
	defer cancel()
	for {
		snap, err := s.api.Get(ctx, s.req.Object())
		if err != nil {
			return nil, err
		}
		if snap.Version >= s.req.Version {
			return snap.Slots, nil
		}
		// Another node answered from a replica that has not caught up yet.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("version %d not readable in time (got %d)", s.req.Version, snap.Version)
		case <-time.After(stateRetry):
		}
	}
}

// errUnreadable rejects an update whose context could not be read; the client may simply try again.
const errUnreadable = "the server could not check this change right now; try again"

func reject(format string, args ...any) backend.HookVerdict {
	return backend.HookVerdict{RejectAll: fmt.Sprintf(format, args...)}
}

// slides judges demo/slides/<deck>: slots presenter (user id), lease (ms; the presenter's claim holds
// until then) and slide (index).
//
//   - presenter: claimed (set to oneself) only when empty or when its lease has run out; changed or
//     released (deleted or null) only by the current presenter; always based on the newest version.
//   - lease: set only by the presenter (after this batch), at most maxLeaseAhead ahead.
//   - slide: changed only by the presenter (after this batch), a whole number below maxSlides.
func (h *hooks) slides(r *backend.HookRequest) backend.HookVerdict {
	st := &state{req: r, api: h.api}
	now := h.now()
	for _, c := range r.Changes {
		switch c.Name {
		case "presenter", "lease", "slide":
		default:
			return reject("a slideshow has only the slots presenter, lease and slide, not %q", c.Name)
		}
	}
	presenter, _ := userOf(st.get("presenter")) // anything but a user id (written before the hook ran) counts as free
	lease, hasLease := st.get("lease")
	if st.err != nil {
		return reject(errUnreadable)
	}
	leaseUntil, _ := number(lease)
	held := presenter != "" && !(hasLease && leaseUntil < msOf(now))

	after := presenter // the presenter once this batch is applied
	if c := st.change("presenter"); c != nil {
		next, ok := userOf(c.Value, !c.Delete)
		switch {
		case !ok:
			return reject("presenter must be a user id or null")
		case presenter == r.User:
			// The presenter may release the role or hand it over.
		case held:
			return reject("%s is presenting", presenter)
		case next != r.User && next != "":
			return reject("claim the presenter role for yourself, not for %s", next)
		}
		if stale(r) {
			return reject("the deck changed meanwhile; look again")
		}
		after = next
	}
	if c := st.change("lease"); c != nil {
		if r.User != presenter && r.User != after {
			return reject("only the presenter can renew the lease")
		}
		if !c.Delete {
			until, ok := number(c.Value)
			if !ok || until > msOf(now.Add(maxLeaseAhead)) {
				return reject("lease must be a time in ms at most %s ahead", maxLeaseAhead)
			}
		}
	}
	if c := st.change("slide"); c != nil {
		switch {
		case after == "":
			return reject("nobody is presenting: take the presenter role first")
		case after != r.User:
			return reject("only the presenter (%s) can change the slide", after)
		case c.Delete:
			return reject("slide cannot be deleted")
		}
		if n, ok := wholeNumber(c.Value); !ok || n < 0 || n >= maxSlides {
			return reject("slide must be a whole number from 0 to %d", maxSlides-1)
		}
	}
	return backend.HookVerdict{}
}

// auction judges demo/auction/<id>: slots item (text), price (whole number), bidder (user id),
// endsAt (ms; the round is open until then).
//
//   - A round starts by setting endsAt with a starting price (and optionally item), leaving bidder
//     empty; only when no round is running, lasting minRound to maxRound.
//   - A bid sets price and bidder (oneself) together, while the round is open, above the current price,
//     based on the newest version (two bids on the same price: one wins, the other is refused).
//   - item may change only between rounds; nothing else may be changed or deleted.
func (h *hooks) auction(r *backend.HookRequest) backend.HookVerdict {
	st := &state{req: r, api: h.api}
	now := msOf(h.now())
	for _, c := range r.Changes {
		switch c.Name {
		case "item", "price", "bidder", "endsAt":
		default:
			return reject("an auction has only the slots item, price, bidder and endsAt, not %q", c.Name)
		}
	}
	endsRaw, _ := st.get("endsAt")
	if st.err != nil {
		return reject(errUnreadable)
	}
	endsAt, _ := number(endsRaw)
	open := endsAt > now
	item, price, bidder, ends := st.change("item"), st.change("price"), st.change("bidder"), st.change("endsAt")

	if item != nil {
		if open {
			return reject("the item cannot change during a round")
		}
		if s, ok := text(item.Value); item.Delete || !ok || s == "" || len(s) > maxItemBytes {
			return reject("item must be a name of 1 to %d bytes", maxItemBytes)
		}
	}

	if ends != nil { // a new round
		if open {
			return reject("a round is already running")
		}
		until, ok := number(ends.Value)
		if ends.Delete || !ok || until < now+minRound.Milliseconds()-1000 || until > now+maxRound.Milliseconds()+1000 {
			return reject("a round lasts from %s to %s: endsAt must be a time in ms in that range", minRound, maxRound)
		}
		if price == nil {
			return reject("a new round needs a starting price")
		}
		if _, ok := validPrice(price); !ok {
			return reject("price must be a whole number from 0 to %d", maxPrice)
		}
		if bidder != nil && !bidder.Delete && string(bidder.Value) != "null" {
			return reject("a new round starts without a bidder")
		}
		if bidder == nil {
			if cur, ok := st.get("bidder"); ok && string(cur) != "null" {
				return reject("a new round starts without a bidder: delete bidder too")
			}
		}
		if stale(r) {
			return reject("the auction changed meanwhile; look again")
		}
		return backend.HookVerdict{}
	}

	if price == nil && bidder == nil {
		return backend.HookVerdict{} // an item change between rounds
	}
	// A bid.
	if !open {
		if endsAt == 0 {
			return reject("no round is running")
		}
		return reject("the auction has closed")
	}
	if price == nil || bidder == nil {
		return reject("a bid sets price and bidder together")
	}
	if who, ok := text(bidder.Value); bidder.Delete || !ok || who != r.User {
		return reject("bid as yourself (%s)", r.User)
	}
	bid, ok := validPrice(price)
	if !ok {
		return reject("a bid must be a whole number up to %d", maxPrice)
	}
	if cur, ok := number(price.Current); ok && bid <= cur {
		return reject("bid must beat %s", strconv.FormatInt(cur, 10))
	}
	if stale(r) {
		return reject("someone bid first")
	}
	return backend.HookVerdict{}
}

// stale reports whether an update is based on an older version of the object than the one it is
// judged against. Versions are checked per slot after the hook, so a batch whose slots changed at
// different times could otherwise commit in part (a bid's bidder without its price); batches that
// must be all or nothing are refused when anything changed since their base.
func stale(r *backend.HookRequest) bool {
	for _, c := range r.Changes {
		if c.Base < r.Version {
			return true
		}
	}
	return false
}

// validPrice reads a price change's value: a whole number from 0 to maxPrice.
func validPrice(c *backend.HookChange) (int64, bool) {
	if c.Delete {
		return 0, false
	}
	n, ok := wholeNumber(c.Value)
	return n, ok && n >= 0 && n <= maxPrice
}

// userOf reads a presenter value: a string, or "" for null or an absent slot (exists false).
func userOf(v json.RawMessage, exists bool) (string, bool) {
	if !exists || string(v) == "null" {
		return "", true
	}
	s, ok := text(v)
	return s, ok && s != ""
}

func text(v json.RawMessage) (string, bool) {
	var s string
	err := json.Unmarshal(v, &s)
	return s, err == nil
}

// number reads a JSON number as whole milliseconds or units, truncating fractions.
func number(v json.RawMessage) (int64, bool) {
	var f float64
	if err := json.Unmarshal(v, &f); err != nil || math.IsInf(f, 0) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// wholeNumber reads a JSON number that has no fraction.
func wholeNumber(v json.RawMessage) (int64, bool) {
	var f float64
	if err := json.Unmarshal(v, &f); err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

func msOf(t time.Time) int64 { return t.UnixMilli() }
