package messaging

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/rso-server/rso/p2p/internal/proto"
)

// Names this service keeps in NATS (docs/PROTOCOL.md §3.10). What it shares with the relay (subjects,
// headers, the relay nodes' bucket) is in internal/chatbus; the friends service's subjects are in
// p2p/internal/friendlist.
const (
	queuePush = "rso-p2p-push" // one messaging instance pushes a changed friend list to the user's devices

	streamDM     = "RSO_DM"       // file: every private message, one subject each: rso.dm.<conv>.<seq>
	subjDMPrefix = "rso.dm."      //
	bucketIndex  = "RSO_DM_INDEX" // file: <user>.<conv> → the user's conversation entry with its receipts
	bucketUsers  = "RSO_CHAT_USERS"
	bucketPres   = "RSO_PRESENCE" // memory: u.<user> status; n.<node>.<user> and h.<node> for sweeping
)

// convID names the conversation of two users, the same from both sides: 32 hex digits of SHA-256 over the
// sorted, length-prefixed pair. Short, because every message is its own subject and the server keeps
// per-subject state; opaque, because who is in it is stored in each message and in the index entries.
func convID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(a)))])
	h.Write([]byte(a))
	h.Write([]byte(b))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func dmSubject(conv string, seq uint64) string {
	return subjDMPrefix + conv + "." + strconv.FormatUint(seq, 10)
}

func dmWildcard(conv string) string { return subjDMPrefix + conv + ".*" }

// seqOfSubject reads the conversation sequence from rso.dm.<conv>.<seq>.
func seqOfSubject(subject string) (conv string, seq uint64, ok bool) {
	rest, found := strings.CutPrefix(subject, subjDMPrefix)
	if !found {
		return "", 0, false
	}
	conv, s, found := strings.Cut(rest, ".")
	if !found {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	return conv, seq, err == nil
}

func indexKey(user, conv string) string { return proto.UserToken(user) + "." + conv }

func presenceKey(user string) string { return "u." + proto.UserToken(user) }

func nodeMarkerKey(node, user string) string { return "n." + node + "." + proto.UserToken(user) }

func nodeHasUsersKey(node string) string { return "h." + node }
