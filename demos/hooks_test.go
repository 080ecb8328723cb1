package demos

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func expect(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

func TestSlidesOnlyThePresenterMovesTheDeck(t *testing.T) {
	clk := newClock()
	n := startNode(t, clk.now)
	const deck = "demo/slides/test"
	waitHooks(t, n, "demo/slides/probe", change{"slide", 1})
	alice, bob, carol := join(t, n, "alice", deck), join(t, n, "bob", deck), join(t, n, "carol", deck)
	lease := func() int64 { return clk.ms(30 * time.Second) }

	expect(t, "slide change on a deck nobody presents", bob.set(change{"slide", 1}),
		"nobody is presenting: take the presenter role first")
	expect(t, "alice claims", alice.set(change{"presenter", "alice"}, change{"lease", lease()}), "ok")
	settle(t, alice, bob, carol)
	expect(t, "bob claims a held role", bob.set(change{"presenter", "bob"}, change{"lease", lease()}), "alice is presenting")
	expect(t, "bob releases alice's role", bob.set(change{"presenter", del}), "alice is presenting")
	expect(t, "bob renews alice's lease", bob.set(change{"lease", lease()}), "only the presenter can renew the lease")

	expect(t, "alice moves", alice.set(change{"slide", 2}), "ok")
	settle(t, alice, bob, carol)
	expect(t, "bob moves", bob.set(change{"slide", 3}), "only the presenter (alice) can change the slide")
	expect(t, "slide out of range", alice.set(change{"slide", maxSlides}), "slide must be a whole number from 0 to 99")
	expect(t, "slide not a whole number", alice.set(change{"slide", 1.5}), "slide must be a whole number from 0 to 99")
	expect(t, "unknown slot", alice.set(change{"notes", "x"}), `a slideshow has only the slots presenter, lease and slide, not "notes"`)

	// The presenter hands over; then only the new one moves the deck.
	expect(t, "alice hands over", alice.set(change{"presenter", "bob"}), "ok")
	settle(t, alice, bob, carol)
	expect(t, "bob moves", bob.set(change{"slide", 3}, change{"lease", lease()}), "ok")
	settle(t, alice, bob, carol)
	expect(t, "alice moves after handing over", alice.set(change{"slide", 0}), "only the presenter (bob) can change the slide")

	// Released: anyone may claim, for themselves only; a claim may move the deck in the same batch.
	expect(t, "bob releases", bob.set(change{"presenter", nil}, change{"lease", del}), "ok")
	settle(t, alice, bob, carol)
	expect(t, "carol claims for alice", carol.set(change{"presenter", "alice"}), "claim the presenter role for yourself, not for alice")
	expect(t, "carol claims and moves", carol.set(change{"presenter", "carol"}, change{"lease", lease()}, change{"slide", 5}), "ok")
	settle(t, alice, bob, carol)

	// Changes to the role must be based on the newest version, so that a batch never commits in part.
	old := carol.base()
	expect(t, "carol moves", carol.set(change{"slide", 4}), "ok")
	expect(t, "carol hands over from an older version", carol.setAt(old, change{"presenter", "bob"}), "the deck changed meanwhile; look again")
	settle(t, alice, bob, carol)

	// A lease too far ahead is refused; one that ran out lets another user take over.
	expect(t, "lease far ahead", carol.set(change{"lease", clk.ms(time.Hour)}), "lease must be a time in ms at most 2m0s ahead")
	clk.add(31 * time.Second)
	expect(t, "alice takes over an expired claim", alice.set(change{"presenter", "alice"}, change{"lease", lease()}), "ok")
	settle(t, alice, bob, carol)
	expect(t, "carol moves after losing the role", carol.set(change{"slide", 1}), "only the presenter (alice) can change the slide")
}

func TestAuctionBidsMustRiseBeforeTheClose(t *testing.T) {
	clk := newClock()
	n := startNode(t, clk.now)
	const lot = "demo/auction/test"
	waitHooks(t, n, "demo/auction/probe", change{"price", 1}, change{"bidder", "probe"})
	alice, bob, carol := join(t, n, "alice", lot), join(t, n, "bob", lot), join(t, n, "carol", lot)

	expect(t, "bid before any round", alice.set(change{"price", 5}, change{"bidder", "alice"}), "no round is running")
	expect(t, "round without a price", carol.set(change{"endsAt", clk.ms(time.Minute)}), "a new round needs a starting price")
	expect(t, "round too long", carol.set(change{"endsAt", clk.ms(2 * time.Hour)}, change{"price", 10}),
		"a round lasts from 5s to 1h0m0s: endsAt must be a time in ms in that range")
	expect(t, "round already over", carol.set(change{"endsAt", clk.ms(-time.Second)}, change{"price", 10}),
		"a round lasts from 5s to 1h0m0s: endsAt must be a time in ms in that range")
	expect(t, "carol starts a round", carol.set(change{"item", "Teapot"}, change{"price", 10}, change{"endsAt", clk.ms(time.Minute)}), "ok")
	settle(t, alice, bob, carol)
	expect(t, "second round while one runs", bob.set(change{"endsAt", clk.ms(2 * time.Minute)}, change{"price", 1}), "a round is already running")
	expect(t, "item changes during a round", bob.set(change{"item", "Kettle"}), "the item cannot change during a round")

	// Bids: above the price, as oneself, price and bidder together.
	expect(t, "bid at the price", alice.set(change{"price", 10}, change{"bidder", "alice"}), "bid must beat 10")
	expect(t, "bid as someone else", alice.set(change{"price", 11}, change{"bidder", "bob"}), "bid as yourself (alice)")
	expect(t, "price alone", alice.set(change{"price", 11}), "a bid sets price and bidder together")
	expect(t, "fractional bid", alice.set(change{"price", 11.5}, change{"bidder", "alice"}), "a bid must be a whole number up to 1000000000")
	stale := bob.base()
	expect(t, "alice bids", alice.set(change{"price", 11}, change{"bidder", "alice"}), "ok")
	settle(t, alice, bob, carol)
	expect(t, "bob bids the same", bob.set(change{"price", 11}, change{"bidder", "bob"}), "bid must beat 11")
	// Both slots changed after bob's base, so the version check answers "conflict" before the hook's
	// "someone bid first" (which keeps a bid whole when only the price had changed: next loop).
	expect(t, "bob bids higher on what he saw before alice's bid", bob.setAt(stale, change{"price", 12}, change{"bidder", "bob"}), "conflict")
	expect(t, "bob bids higher", bob.set(change{"price", 12}, change{"bidder", "bob"}), "ok")
	settle(t, alice, bob, carol)

	// The leader raises her own bid (only the price slot changes); a higher bid based on the version
	// before that is refused whole, not committed as a bidder without its price.
	base := carol.base()
	expect(t, "bob raises his own bid", bob.set(change{"price", 13}, change{"bidder", "bob"}), "ok")
	expect(t, "carol bids higher on an older version", carol.setAt(base, change{"bidder", "carol"}, change{"price", 14}), "someone bid first")
	settle(t, alice, bob, carol)

	// Concurrent bids on the same price: exactly one wins, whatever the amounts, and the loser commits
	// nothing (setAt fails the test on a half-committed batch), also when the leader bids again and
	// only the price slot changes.
	for round := 0; round < 5; round++ {
		base := alice.base()
		var wg sync.WaitGroup
		outcomes := make([]string, 2)
		for i, u := range []*user{alice, carol} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outcomes[i] = u.setAt(base, change{"price", 20 + round*10 + i}, change{"bidder", u.name})
			}()
		}
		wg.Wait()
		ok := 0
		for _, o := range outcomes {
			if o == "ok" {
				ok++
			} else if o != "someone bid first" && o != "conflict" && !strings.HasPrefix(o, "bid must beat") {
				t.Fatalf("round %d: unexpected reject %q", round, o)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d concurrent bids won (%q), want exactly one", round, ok, outcomes)
		}
		settle(t, alice, bob, carol)
	}

	// After the close nothing bids; a new round starts only with the bidder cleared.
	clk.add(time.Minute)
	expect(t, "bid after the close", bob.set(change{"price", 1000}, change{"bidder", "bob"}), "the auction has closed")
	expect(t, "new round keeping the winner", bob.set(change{"price", 5}, change{"endsAt", clk.ms(time.Minute)}),
		"a new round starts without a bidder: delete bidder too")
	expect(t, "new round with a bidder", bob.set(change{"price", 5}, change{"bidder", "bob"}, change{"endsAt", clk.ms(time.Minute)}),
		"a new round starts without a bidder")
	expect(t, "item changes between rounds", bob.set(change{"item", "Kettle"}), "ok")
	expect(t, "bob starts a round at a lower price", bob.set(change{"price", 5}, change{"bidder", del}, change{"endsAt", clk.ms(time.Minute)}), "ok")
	settle(t, alice, bob, carol)
	expect(t, "alice bids in the new round", alice.set(change{"price", 6}, change{"bidder", "alice"}), "ok")
	expect(t, "unknown slot", alice.set(change{"note", "hi"}), `an auction has only the slots item, price, bidder and endsAt, not "note"`)
	expect(t, "price deleted", alice.set(change{"price", del}, change{"bidder", del}), "bid as yourself (alice)")
}
