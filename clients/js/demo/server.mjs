// The ringpush demo web chat: a tiny static server for the demo page, the
// built client and its msgpack dependency, plus a DEMO-ONLY token endpoint
// that signs a JWT for any user name with the ringpushd secret. Never expose
// this to anyone you would not give the secret to.
//
//   node demo/server.mjs --secret S [--ringpush ws://127.0.0.1:7400/ws] [--port 8080]
import { createHmac } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const USER_RE = /^[A-Za-z0-9_.@-]{1,64}$/;
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".map": "application/json" };

function b64url(x) {
  return Buffer.from(x).toString("base64url");
}

/** An HS256 JWT for `user`, valid for `ttl` seconds, signed with the raw secret bytes. */
export function demoToken(secret, user, ttl = 12 * 3600) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub: user, exp: Math.floor(Date.now() / 1000) + ttl }));
  const sig = createHmac("sha256", Buffer.from(secret)).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64url(sig)}`;
}

/** Maps a request path to a file under the package, or null. */
function resolve(urlPath) {
  const mounts = [
    ["/lib/", path.join(root, "dist")],
    ["/vendor/msgpack/", path.join(root, "node_modules/@msgpack/msgpack/dist.esm")],
    ["/", path.join(root, "demo")],
  ];
  const p = urlPath === "/" ? "/index.html" : urlPath;
  for (const [prefix, dir] of mounts) {
    if (!p.startsWith(prefix)) continue;
    let rel;
    try {
      rel = decodeURIComponent(p.slice(prefix.length));
    } catch {
      return null; // a malformed escape (%zz): no such file
    }
    const file = path.resolve(dir, rel);
    if (file !== dir && !file.startsWith(dir + path.sep)) return null; // no escaping the mount
    return file;
  }
  return null;
}

/**
 * Starts the demo server. `wsUrl` is the ringpushd WebSocket URL the page
 * connects to; `secret` the ringpushd JWT secret. Resolves with the
 * http.Server once it listens (port 0: any free port, see server.address()).
 */
export function startDemo({ port = 8080, host = "127.0.0.1", secret, wsUrl }) {
  if (!secret) throw new Error("demo: the ringpushd secret is required (--secret or RINGPUSH_SECRET)");
  const server = http.createServer((req, res) => {
    let url;
    try {
      url = new URL(req.url, "http://demo");
    } catch {
      res.writeHead(400, { "Content-Type": "text/plain" });
      res.end("bad request\n");
      return;
    }
    if (url.pathname === "/token") {
      const user = url.searchParams.get("user") || "";
      if (!USER_RE.test(user)) {
        res.writeHead(400, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ error: "user: 1-64 of [A-Za-z0-9_.@-]" }));
        return;
      }
      res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store" });
      res.end(JSON.stringify({ token: demoToken(secret, user), url: wsUrl }));
      return;
    }
    const file = resolve(url.pathname);
    fs.readFile(file || "", (err, data) => {
      if (err || !file) {
        res.writeHead(404, { "Content-Type": "text/plain" });
        res.end("not found\n");
        return;
      }
      res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] || "application/octet-stream", "Cache-Control": "no-store" });
      res.end(data);
    });
  });
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, host, () => ok(server));
  });
}

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(arg("--port", process.env.DEMO_PORT || 8080));
  const wsUrl = arg("--ringpush", process.env.RINGPUSH_URL || "ws://127.0.0.1:7400/ws");
  const secret = arg("--secret", process.env.RINGPUSH_SECRET);
  const host = arg("--bind", "127.0.0.1");
  startDemo({ port, host, secret, wsUrl }).then(
    (s) => {
      const { port: p } = s.address();
      console.log(`ringpush demo on http://${host}:${p}/?user=ana&peer=ben  (and ?user=ben&peer=ana)`);
      console.log(`  talking to ${wsUrl}; tokens are minted for any name: a demo, not an auth server`);
    },
    (e) => {
      console.error(String(e.message || e));
      process.exit(2);
    },
  );
}
