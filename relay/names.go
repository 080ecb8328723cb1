package relay

import "github.com/rso-server/rso/internal/ids"

// The names the relay meets the messaging service on are in internal/chatbus (docs/PROTOCOL.md §3.10).

// safeID keeps the characters that node and device ids may hold (they become keys and header values).
func safeID(s string, max int) string {
	s = ids.Safe(s)
	if len(s) > max {
		s = s[:max]
	}
	return s
}
