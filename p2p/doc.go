// Package p2p is private chat on the bus, in three parts that meet on NATS subjects only:
//
//   - p2p/messaging, the messaging and presence service (the seed's msgd): private messages with a
//     gap-free sequence per conversation, receipts, offline sync and history, presence, and direct peer
//     signalling (WebRTC offers, answers and ICE candidates relayed to a connected user);
//   - p2p/friends, the friends service: the friend lists and the rules of request, accept, remove, block
//     and unblock; the messaging service caches its lists;
//   - p2p/internal, what the two share: the messages between them (friendlist), error codes and boundary
//     checks (proto), and the worker pool (workers). Neither service imports the other.
//
// Clients reach the services through the relay package, which holds their sockets (docs/PROTOCOL.md §3).
// This package holds no code, only the end-to-end tests that run relays and both services together.
package p2p
