/**
 * The WebSocket the client runs on: the platform's own where there is one
 * (browsers, Deno, Node.js 22+), else the `ws` package (Node.js 20). Only the
 * part of the standard WebSocket interface that both provide is used.
 */
export interface SocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type SocketConstructor = new (url: string) => SocketLike;

let cached: SocketConstructor | null = null;

/** The constructor to use: `given` if set, the global WebSocket, or `ws`.
 * Rejects when none is available. */
export async function socketConstructor(given?: SocketConstructor): Promise<SocketConstructor> {
  if (given) return given;
  if (cached) return cached;
  const g = (globalThis as { WebSocket?: SocketConstructor }).WebSocket;
  if (typeof g === "function") {
    cached = g;
    return g;
  }
  // A variable keeps bundlers for the browser from trying to resolve `ws`.
  const name = "ws";
  const mod = (await import(/* @vite-ignore */ name)) as {
    WebSocket?: SocketConstructor;
    default?: SocketConstructor;
  };
  const ctor = mod.WebSocket ?? mod.default;
  if (!ctor) throw new Error("no WebSocket implementation: install the `ws` package");
  cached = ctor;
  return ctor;
}

/** The bytes of a binary message, or null for a text message. */
export function messageBytes(data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) {
    // `ws` hands over fragmented messages as a list of Buffers with binaryType "nodebuffer".
    const parts = data as Uint8Array[];
    const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.byteLength;
    }
    return out;
  }
  return null;
}
