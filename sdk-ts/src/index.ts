export {
  RsoClient,
  backoffDelay,
  defaultBackoff,
  defaultTiming,
  type BackoffOptions,
  type RsoClientEvents,
  type RsoClientOptions,
  type Status,
  type Timing,
} from "./client.js";
export type { RemoteObject, RemoteObjectEvents, SyncInfo } from "./remote.js";
export type {
  Chat,
  ChatEvents,
  ChatMessage,
  Conversation,
  FriendAction,
  FriendList,
  Friends,
  FriendsEvents,
  HistoryPage,
  Presence,
  PresenceEvents,
  PresenceStatus,
  Receipt,
  ReceiptKind,
  RelayLimits,
  RelayOptions,
  SentMessage,
  Signal,
} from "./chattypes.js";
export type { Limits, SyncChange } from "./frames.js";
export { RsoError, ServerError, ConnectionError, ProtocolError } from "./errors.js";
export {
  ErrorCode,
  ChatErrorCode,
  ClientErrorCode,
  CloseCode,
  SyncCode,
  closeAction,
  closeCodeNames,
  retryableErrorCodes,
  retryableChatErrorCodes,
  type CloseAction,
} from "./codes.js";
export type { Listener, Unsubscribe } from "./emitter.js";
export type { WebSocketConstructor, WebSocketLike } from "./host.js";
