/**
 * Errors raised by the client. `code` is a protocol error code (PROTOCOL §3:
 * `bad_request`, `forbidden`, `not_found`, `conflict`, `too_large`,
 * `rate_limited`, `expired`, `unavailable`, `internal`, `unauthorized`,
 * `bad_frame`) or one of the client's own:
 *
 * - `disconnected`: the connection dropped after a request that is not safe to
 *   repeat had been sent; whether the server carried it out is unknown.
 * - `timeout`: no reply within the request's time limit.
 * - `closed`: the client was closed before the request completed.
 */
export type ErrorCode =
  | "bad_frame"
  | "bad_request"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "too_large"
  | "rate_limited"
  | "expired"
  | "unavailable"
  | "internal"
  | "disconnected"
  | "timeout"
  | "closed";

export class RingpushError extends Error {
  readonly code: ErrorCode | string;

  constructor(code: ErrorCode | string, message: string) {
    super(`${code}: ${message}`);
    this.name = "RingpushError";
    this.code = code;
  }
}
