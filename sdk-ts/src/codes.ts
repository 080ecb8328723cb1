// Protocol codes, mirrored from docs/PROTOCOL.md §1 (and the Go client's constants). Change them together.

/** The error codes /so (§1.7) and /relay (§3.8) have in common, with the same meaning. */
const commonErrorCodes = {
  BadJson: "bad_json",
  BadFrame: "bad_frame",
  UnknownOp: "unknown_op",
  FrameTooLarge: "frame_too_large",
  RateLimited: "rate_limited",
  Busy: "busy",
  /** The request id was used before for a different request: nothing was applied; use a new id. */
  IdReused: "id_reused",
  Unavailable: "unavailable",
  Internal: "internal",
} as const;

/** Error codes of server `error` frames (§1.7), plus `unauthorized` from a refused upgrade (§1.1). */
export const ErrorCode = {
  ...commonErrorCodes,
  BadName: "bad_name",
  ValueTooLarge: "value_too_large",
  TooManyChanges: "too_many_changes",
  TooManySlots: "too_many_slots",
  ObjectTooLarge: "object_too_large",
  TooManySubscriptions: "too_many_subscriptions",
  NotSubscribed: "not_subscribed",
  Forbidden: "forbidden",
  HookUnavailable: "hook_unavailable",
  /** Only in the JSON body of a refused upgrade (HTTP 401); browsers see close code 1006 instead. */
  Unauthorized: "unauthorized",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Error codes whose frame was dropped without effect and that the SDK retries by itself with the same
 * request id (§1.7: `busy` says "retry the request (same id)"; `rate_limited` drops the frame;
 * `unavailable` says "retry later").
 */
export const retryableErrorCodes: ReadonlySet<string> = new Set<string>([
  ErrorCode.Busy,
  ErrorCode.RateLimited,
  ErrorCode.Unavailable,
]);

/** Codes of errors the SDK raises itself (never sent by the server). */
export const ClientErrorCode = {
  /** The client or the object was closed by the application. */
  Closed: "closed",
  /** The server sent something that breaks the protocol; the SDK reconnects. */
  ProtocolError: "protocol_error",
  /** No pong (or no hello) in time; the SDK reconnects. */
  Timeout: "timeout",
  /** A value or argument cannot be sent as JSON. */
  InvalidValue: "invalid_value",
  /** Neither options.WebSocket nor a global WebSocket. */
  NoWebSocket: "no_websocket",
  /** The URL cannot be opened. */
  BadUrl: "bad_url",
  /** `getToken` threw or returned no token. */
  TokenRefreshFailed: "token_refresh_failed",
} as const;
export type ClientErrorCode = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

/** WebSocket close codes (§1.9), plus 1006 which browsers report for a connection lost or refused. */
export const CloseCode = {
  Normal: 1000,
  UnsupportedData: 1003,
  Abnormal: 1006,
  TooBig: 1009,
  Internal: 1011,
  Restart: 1012,
  Unauthorized: 4001,
  TokenExpired: 4003,
  SlowConsumer: 4008,
  Abuse: 4009,
  PongTimeout: 4010,
  Operator: 4011,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** The `code` of a ConnectionError for each close code. */
export const closeCodeNames: Readonly<Record<number, string>> = {
  [CloseCode.Normal]: "normal",
  [CloseCode.UnsupportedData]: "unsupported_data",
  [CloseCode.Abnormal]: "connection_lost",
  [CloseCode.TooBig]: "message_too_big",
  [CloseCode.Internal]: "server_error",
  [CloseCode.Restart]: "server_restart",
  [CloseCode.Unauthorized]: "unauthorized",
  [CloseCode.TokenExpired]: "token_expired",
  [CloseCode.SlowConsumer]: "slow_consumer",
  [CloseCode.Abuse]: "abuse",
  [CloseCode.PongTimeout]: "pong_timeout",
  [CloseCode.Operator]: "operator_disconnect",
};

/** The close code the SDK uses when it drops a socket itself (dead peer, protocol error). */
export const clientDropCloseCode = 4000;

/**
 * What the client does after a close code (§1.9):
 * - `stop`: stay closed (status "closed") until the application calls `client.connect()` again.
 * - `reconnect`: reconnect with jittered exponential backoff.
 * - `reconnect-soon`: the server is restarting: try again after a short jittered delay.
 * - `reconnect-late`: abuse: wait at least 5 s.
 * - `new-token`: stop, unless `getToken` is given: then reconnect with a fresh token.
 */
export type CloseAction = "stop" | "reconnect" | "reconnect-soon" | "reconnect-late" | "new-token";

export function closeAction(code: number): CloseAction {
  switch (code) {
    case CloseCode.Normal:
    case CloseCode.UnsupportedData: // the client sent a binary frame: a bug that reconnecting repeats
    case CloseCode.Unauthorized:
    case CloseCode.Operator: // an operator closed the session: the reason says why; reconnecting would undo it
      return "stop";
    case CloseCode.TokenExpired:
      return "new-token";
    case CloseCode.Restart:
      return "reconnect-soon";
    case CloseCode.Abuse:
      return "reconnect-late";
    default:
      // 1006, 1009, 1011, 4008, 4010, and codes this SDK does not know (1001 from a proxy, ...).
      return "reconnect";
  }
}

/** Sync entry codes (§1.4). */
export const SyncCode = {
  Clear: "clear",
  Change: "change",
  Delete: "delete",
  Success: "success",
  Reject: "reject",
} as const;
export type SyncCode = (typeof SyncCode)[keyof typeof SyncCode];

/** Error codes of the private-chat relay's `error` frames (§3.8). */
export const ChatErrorCode = {
  ...commonErrorCodes,
  MessageTooLarge: "message_too_large",
  UnknownUser: "unknown_user",
  Blocked: "blocked",
  NotFriends: "not_friends",
  Offline: "offline",
  BadSeq: "bad_seq",
  NotFound: "not_found",
  TooManyFriends: "too_many_friends",
  /** TCP only (the auth frame was refused); on the WebSocket a refused token is an HTTP 401. */
  Unauthorized: "unauthorized",
  /** TCP only, like `unauthorized`. */
  TokenExpired: "token_expired",
} as const;
export type ChatErrorCode = (typeof ChatErrorCode)[keyof typeof ChatErrorCode];

/** Chat error codes after which the SDK re-sends the frame by itself, with the same id (§3.3, §3.8). */
// The same three codes as on /so: one set, under both names.
export const retryableChatErrorCodes: ReadonlySet<string> = retryableErrorCodes;
