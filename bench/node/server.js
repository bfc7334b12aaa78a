// The second reference for bench/fanout.py: Node socket.io with @socket.io/redis-adapter.
//
// Same contract as bench/stock_server.py: `connect` verifies the harness's HS256 JWT
// (auth.token), `subscribe_on_session` joins the session's room and acks, `set_session_status`
// emits `session_status` (same payload shape, with an offset counter) to the room and acks
// with the offset. No Redis state, no log: only the broadcast machinery is compared.
//
//   SESSIONHUB_JWT_SECRET=... node bench/node/server.js --port P --redis-url redis://127.0.0.1:R/0
"use strict";

const crypto = require("node:crypto");
const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const EPOCH = "node";
const MAX_TOKEN_CHARS = 8192;

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (fallback === undefined) throw new Error(`missing ${name}`);
  return fallback;
}

function base64urlJson(part) {
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
}

// HS256 only (the algorithm is pinned, as sessionhub pins it); `exp` and `sub` are required.
function verifyToken(token, secret, nowS) {
  if (typeof token !== "string" || !token || token.length > MAX_TOKEN_CHARS) return "a bearer token is required";
  const parts = token.split(".");
  if (parts.length !== 3) return "invalid token";
  let header, claims;
  try {
    header = base64urlJson(parts[0]);
    claims = base64urlJson(parts[1]);
  } catch {
    return "invalid token";
  }
  if (!header || header.alg !== "HS256") return "invalid token";
  const expected = crypto.createHmac("sha256", secret).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], "base64url");
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return "invalid token";
  if (!claims || typeof claims.sub !== "string" || typeof claims.exp !== "number") return "invalid token";
  if (claims.exp <= nowS) return "token expired";
  return null;
}

function sessionStore() {
  const sessions = new Map();
  return (id) => {
    let state = sessions.get(id);
    if (state === undefined) {
      state = { status: "ready", offset: 0 };
      sessions.set(id, state);
    }
    return state;
  };
}

function attachHandlers(io, secret) {
  const session = sessionStore();
  io.use((socket, next) => {
    const auth = socket.handshake.auth;
    const refused = verifyToken(auth && auth.token, secret, Date.now() / 1000);
    if (refused === null) return next();
    const err = new Error("unauthorized");
    err.data = { message: refused };
    return next(err);
  });
  io.on("connection", (socket) => {
    socket.on("subscribe_on_session", (data, ack) => {
      const id = String(data.session_id);
      socket.join(id);
      if (typeof ack === "function") ack({ ok: true, session_id: id, epoch: EPOCH, offset: session(id).offset });
    });
    socket.on("set_session_status", (data, ack) => {
      const id = String(data.session_id);
      const status = String(data.status);
      const state = session(id);
      const previous = state.status;
      const reply = { ok: true, session_id: id, status, previous };
      if (status === previous) {
        if (typeof ack === "function") ack({ ...reply, changed: false, offset: 0 });
        return;
      }
      state.status = status;
      state.offset += 1;
      const event = {
        session_id: id,
        epoch: EPOCH,
        offset: state.offset,
        type: "session_status",
        ts: Date.now(),
        data: { status, previous },
      };
      io.to(id).emit("session_status", event);
      if (typeof ack === "function") ack({ ...reply, changed: true, offset: state.offset });
    });
  });
}

async function main() {
  const port = Number(option("--port"));
  const host = option("--host", "127.0.0.1");
  const redisUrl = option("--redis-url");
  const secret = process.env.SESSIONHUB_JWT_SECRET;
  if (!secret) throw new Error("SESSIONHUB_JWT_SECRET is not set");

  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer((req, res) => {
    if (req.url === "/readyz") {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end('{"ok":true}');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  const io = new Server(httpServer, { adapter: createAdapter(pub, sub), serveClient: false });
  attachHandlers(io, secret);
  httpServer.listen(port, host, () => console.log(`node socket.io serving on http://${host}:${port}`));

  const stop = () => {
    io.close();
    Promise.allSettled([pub.quit(), sub.quit()]).then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
