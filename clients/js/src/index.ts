/**
 * ringpush client for browsers and Node.js.
 *
 *   const c = new RingpushClient({ url: "ws://127.0.0.1:7400/ws", token, device: "web" });
 *   c.on("msg", (m) => console.log(m.from, m.body));
 *   await c.connect();
 *   await c.send({ to: "ben", body: "hi" });
 */
export { RingpushClient, directConv, groupConv } from "./client.js";
export type { ClientOptions, ReconnectOptions } from "./client.js";
export { RingpushError } from "./errors.js";
export type { ErrorCode } from "./errors.js";
export { Groups, Friends } from "./groups.js";
export type { GroupCreateOptions, GroupUpdate } from "./groups.js";
export type { SocketConstructor, SocketLike } from "./socket.js";
export * from "./types.js";
