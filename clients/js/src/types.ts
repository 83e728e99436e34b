/**
 * The shapes of the ringpush wire protocol (version 1) as the client exposes
 * them. Field names are the wire names, so the protocol reference applies
 * unchanged. Bodies keep their MessagePack type: a string was sent as str, a
 * Uint8Array as bin.
 */
export type Body = string | Uint8Array;

/** A `msg` push, and one element of a history page. */
export interface Message {
  conv: string;
  seq: number;
  from: string;
  dev: string;
  cmid: string;
  type: string;
  body: Body;
  ts: number;
  /** For `type === "event"`: what happened to a group. */
  data?: Record<string, unknown>;
  /** For `type === "recall"`: the seq of the recalled entry. */
  target?: number;
}

/** The hello reply. */
export interface Session {
  user: string;
  device: string;
  heartbeat_ms: number;
  server_time: number;
  max_frame: number;
}

/** A `read` push: `user` has read `conv` up to `seq`. */
export interface ReadReceipt {
  conv: string;
  user: string;
  seq: number;
}

/** A `friend` push. */
export interface FriendEvent {
  event: "request" | "added" | "removed";
  from?: string;
  user?: string;
  note?: string;
}

export interface ConvSummary {
  conv: string;
  last_seq: number;
  last_ts: number;
  read_seq: number;
  ack_seq: number;
  unread: number;
}

export interface SendOptions {
  /** A user id for a direct message; exactly one of `to` and `group`. */
  to?: string;
  group?: string;
  body: Body;
  /** Default `"text"`. */
  type?: string;
  /** Client message id; generated when absent. Give the same one to repeat a
   * send safely: the server answers with the original entry and `dup: true`. */
  cmid?: string;
}

export interface SendResult {
  conv: string;
  seq: number;
  ts: number;
  cmid: string;
  /** True when the server had already accepted this cmid. */
  dup: boolean;
}

export interface HistoryOptions {
  /** Entries below this seq (exclusive); default: the newest. */
  before?: number;
  /** Entries above this seq (exclusive); the oldest first. */
  after?: number;
  /** Default 50, at most 200. */
  limit?: number;
}

export interface HistoryPage {
  conv: string;
  msgs: Message[];
  more: boolean;
}

export interface GroupInfo {
  group: string;
  name: string;
  notice: string;
  owner: string;
  open: boolean;
  count: number;
  last_seq: number;
  remark: string;
}

export interface GroupMember {
  user: string;
  role: "owner" | "admin" | "member";
  nick: string;
  joined_seq: number;
}

export interface FriendList {
  friends: { user: string; since: number }[];
  requests: { from: string; note: string; ts: number }[];
}

export type State = "idle" | "connecting" | "open" | "waiting" | "offline" | "closed";

/** What the client emits; `client.on(name, fn)`. */
export interface ClientEvents {
  /** A session is established (after every successful hello). */
  open: Session;
  /** A new entry, deduplicated by (conv, seq), in seq order per conversation. */
  msg: Message;
  read: ReadReceipt;
  friend: FriendEvent;
  /** Catch-up after a resumed hello is complete, and every entry of it handled. */
  synced: void;
  /** The server announced that it is closing the connection. */
  bye: { reason: string };
  /** The connection closed; `reconnect` tells whether the client will retry. */
  close: { code: number; reason: string; reconnect: boolean };
  /** A reconnect is scheduled after `delay` ms. */
  reconnecting: { attempt: number; delay: number };
  /** Entries between two received ones could not be fetched (e.g. not a member then). */
  gap: { conv: string; from: number; to: number };
  state: State;
  /** Errors with no request to report them to (a fatal server error, a listener throwing). */
  error: Error;
}
