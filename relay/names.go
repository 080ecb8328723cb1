package relay

import (
	"encoding/base64"

	"github.com/rso-server/rso/internal/ids"
)

// Names on the bus (docs/PROTOCOL.md §3.10). The p2p package defines the same values: the relay and the
// messaging service meet on these subjects and never import each other.
const (
	subjFrame      = "rso.p2p.frame"   // request: one client frame in an envelope; the reply holds frames for that connection
	subjHello      = "rso.p2p.hello"   // request: a connection opened
	subjBye        = "rso.p2p.bye"     // request: the user's last connection on this node is gone (after the grace period)
	subjUserPrefix = "rso.p2p.user."   // + user token: frames for every connection of that user
	subjLivePrefix = "rso.p2p.live."   // + user token: requests (signals) answered by each node that wrote them to a connection
	hdrExceptConn  = "Rso-Except-Conn" // on subjUserPrefix: skip this connection
	hdrDevice      = "Rso-Device"      // on subjUserPrefix: only connections of this device

	bucketNodes = "RSO_RELAY_NODES" // memory, TTL: one key per live relay node, refreshed every heartbeat
)

// userToken turns a user id (any 1–200 bytes) into one subject token: unpadded base64url.
func userToken(user string) string { return base64.RawURLEncoding.EncodeToString([]byte(user)) }

// safeID keeps the characters that node and device ids may hold (they become keys and header values).
func safeID(s string, max int) string {
	s = ids.Safe(s)
	if len(s) > max {
		s = s[:max]
	}
	return s
}
