// The public types of private chat (docs/PROTOCOL.md §3): what `client.chat`, `client.presence` and
// `client.friends` offer, and what their events carry.
import type { Status } from "./connection.js";
import type { Listener, Unsubscribe } from "./emitter.js";
import type { ConnectionError, RsoError } from "./errors.js";
import type { FriendAction, PresenceStatus, ReceiptKind, RelayLimits } from "./relayframes.js";

export type { FriendAction, PresenceStatus, ReceiptKind, RelayLimits };

/** The answer to `chat.send`: the message is stored as `seq` of the conversation with `to`. */
export interface SentMessage {
  /** The message id (the `cid` others see). */
  id: string;
  to: string;
  seq: number;
  /** Server time of storage, ms since the epoch. */
  ts: number;
}

/** A stored message (§3.3). */
export interface ChatMessage {
  /** The conversation partner: `from` or `to`, whichever is not you. */
  peer: string;
  /** Its number in the conversation: 1, 2, 3, … without gaps. */
  seq: number;
  from: string;
  to: string;
  /** The sender's message id (`cid` on the wire). */
  id: string;
  /** Server time of storage, ms since the epoch. */
  ts: number;
  body: unknown;
  /** You wrote it (on this device or another one). */
  mine: boolean;
}

/** A receipt (§3.4): `by` has got (`delivered`) or seen (`read`) every message up to `seq` with `peer`. */
export interface Receipt {
  /** The conversation partner. */
  peer: string;
  /** Who moved the mark: the partner, or you (on another device). */
  by: string;
  kind: ReceiptKind;
  seq: number;
}

/** What is known of a conversation, from sync, messages and receipts. */
export interface Conversation {
  peer: string;
  /** The last `seq` known. */
  last: number;
  /** Your marks. */
  delivered: number;
  read: number;
  /** The partner's marks (✓✓ on your messages). */
  peerDelivered: number;
  peerRead: number;
}

export interface HistoryPage {
  /** Oldest first. */
  messages: ChatMessage[];
  /** Older messages exist (next page: `before` = the first `seq` returned). */
  more: boolean;
  /** The conversation's last `seq`. */
  last: number;
}

export interface FriendList {
  friends: string[];
  /** They asked you. */
  incoming: string[];
  /** You asked them. */
  outgoing: string[];
  blocked: string[];
  /** Opaque; presented to the server so that an unchanged list is not sent again. */
  hash: string;
}

/** A WebRTC signal from another user's device (§3.7). */
export interface Signal {
  from: string;
  /** The sender's device: answer to it. */
  device: string | undefined;
  data: unknown;
}

export interface ChatEvents {
  /** Every stored message once per conversation, in `seq` order (yours from this client too, once stored). */
  message: [message: ChatMessage];
  /** A mark moved: the partner's, or yours on another device. */
  receipt: [receipt: Receipt];
  /** A conversation's `last` or marks changed. */
  conversation: [conversation: Conversation];
  /** Status of the /relay socket. */
  status: [status: Status, reason: ConnectionError | undefined];
  /** Why the relay socket stopped, protocol errors, and refusals of frames that no request waits for. */
  error: [error: RsoError];
  signal: [signal: Signal];
}

export interface PresenceEvents {
  /** A friend's status changed. */
  change: [user: string, status: PresenceStatus];
}

export interface FriendsEvents {
  /** A new friend list: pushed by the server, or the answer to an action. */
  change: [list: FriendList];
}

export interface Chat {
  /** Status of the /relay socket. */
  readonly status: Status;
  /** The server (one of the client's `urls`) the /relay socket is connected to, or trying; the first one before it was opened. */
  readonly url: string;
  /** Your user id and device, from the relay's hello. */
  readonly user: string | undefined;
  readonly device: string | undefined;
  readonly limits: RelayLimits | undefined;
  /**
   * Sends a message; resolves once it is stored. Queued while disconnected, re-sent with the same id
   * after a reconnect unless the login sync shows it stored, and retried after `rate_limited`, `busy`,
   * `unavailable`. Rejects with a `ServerError` (`unknown_user`, `blocked`, `not_friends`,
   * `message_too_large`, `bad_frame`, `id_reused`) or the error that stopped the client.
   */
  send(to: string, body: unknown): Promise<SentMessage>;
  /** A page of the conversation below `before` (default: the newest), oldest first. */
  history(peer: string, options?: { before?: number; limit?: number }): Promise<HistoryPage>;
  markDelivered(peer: string, seq: number): Promise<void>;
  markRead(peer: string, seq: number): Promise<void>;
  conversations(): Conversation[];
  conversation(peer: string): Conversation | undefined;
  /** A WebRTC signal to `to` (only to `device`, when given); refused with `offline` when they are not connected. */
  signal(to: string, data: unknown, options?: { device?: string }): Promise<void>;
  /** Opens the relay socket (any other use does too), or starts it again after it stopped. */
  connect(): void;
  on<K extends keyof ChatEvents>(event: K, listener: Listener<ChatEvents[K]>): Unsubscribe;
}

export interface Presence {
  /** A user's last known status (your own for your id); "offline" when nothing is known. */
  status(user: string): PresenceStatus;
  /** Every friend's status (every user seen, before the friend list arrived). */
  all(): Record<string, PresenceStatus>;
  /** Shows you "away" (or back "online") to your friends; re-applied after every reconnect. */
  setAway(away: boolean): Promise<void>;
  on<K extends keyof PresenceEvents>(event: K, listener: Listener<PresenceEvents[K]>): Unsubscribe;
}

export interface Friends {
  /** The last list received, if any. */
  readonly current: FriendList | undefined;
  /** Asks for the list, presenting the cached hash (an unchanged list is not sent again). */
  list(): Promise<FriendList>;
  request(user: string): Promise<FriendList>;
  accept(user: string): Promise<FriendList>;
  remove(user: string): Promise<FriendList>;
  block(user: string): Promise<FriendList>;
  unblock(user: string): Promise<FriendList>;
  on<K extends keyof FriendsEvents>(event: K, listener: Listener<FriendsEvents[K]>): Unsubscribe;
}

export interface RelayOptions {
  /**
   * Send `delivered` receipts by itself for the messages handed to `chat.on("message")` listeners
   * (default true). `read` receipts only go out through `markRead`.
   */
  autoDelivered?: boolean;
  /** How long a gap in a conversation may wait for its messages to arrive live before `history` fills it (default 250 ms). */
  gapWaitMs?: number;
}
