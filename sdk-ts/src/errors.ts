import { closeCodeNames } from "./codes.js";

export interface RsoErrorOptions {
  cause?: unknown;
}

/** Base class of every error the SDK emits or throws. `code` is a protocol or client error code (codes.ts). */
export class RsoError extends Error {
  override name = "RsoError";
  readonly code: string;

  constructor(code: string, message: string, options?: RsoErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** An `error` frame: the server refused one frame and applied nothing of it (§1.7). */
export class ServerError extends RsoError {
  override name = "ServerError";
  /** The refused frame's request id, when the server could read it. */
  readonly id: string | undefined;
  /** The object the refused frame addressed, when the server could read it. */
  readonly obj: string | undefined;
  readonly persistent: boolean | undefined;

  constructor(code: string, message: string, info: { id?: string | undefined; obj?: string | undefined; persistent?: boolean | undefined } = {}) {
    super(code, message);
    this.id = info.id;
    this.obj = info.obj;
    this.persistent = info.persistent;
  }
}

/**
 * The connection ended or could not be made. `closeCode` is the WebSocket close code when there was one
 * (§1.9); `code` names it ("token_expired", "connection_lost", ...) or is a client code such as "timeout".
 */
export class ConnectionError extends RsoError {
  override name = "ConnectionError";
  readonly closeCode: number | undefined;
  readonly reason: string;

  constructor(code: string, message: string, info: { closeCode?: number; reason?: string; cause?: unknown } = {}) {
    super(code, message, info.cause === undefined ? undefined : { cause: info.cause });
    this.closeCode = info.closeCode;
    this.reason = info.reason ?? "";
  }

  /** The error for a close event with this code and reason. */
  static fromClose(closeCode: number, reason: string): ConnectionError {
    const code = closeCodeNames[closeCode] ?? `close_${closeCode}`;
    const why = reason === "" ? "" : `: ${reason}`;
    return new ConnectionError(code, `connection closed with code ${closeCode} (${code})${why}`, { closeCode, reason });
  }
}

/** The server sent a frame that breaks the protocol. The SDK drops the connection and resyncs. */
export class ProtocolError extends RsoError {
  override name = "ProtocolError";

  constructor(message: string, options?: RsoErrorOptions) {
    super("protocol_error", message, options);
  }
}
