// Drives the real socket.io-client 2.x (npm, Engine.IO 3 / Socket.IO 4) for the Python tests
// (tests/sio2.py), one request a line on its pipes (tests/nodeserve.mjs).
//
// Every event a socket hears is recorded in order, with its arguments: the Socket.IO events
// (connect, disconnect, error, and the server's pushes), the manager's (reconnect,
// reconnect_attempt, ping, pong) and the engine's transport upgrade ("upgrade").
import io from "socket.io-client-2";

import { serve } from "./nodeserve.mjs";

const sockets = new Map();
let nextSocket = 1;

const MANAGER_EVENTS = ["reconnect", "reconnect_attempt", "reconnect_error", "reconnect_failed",
  "ping", "pong"];

function socketOf(request) {
  const entry = sockets.get(request.socket);
  if (!entry) throw new Error(`no socket ${request.socket}`);
  return entry;
}

const operations = {
  // {url, options}: a new socket (a new manager and engine each); returns its number.
  connect({ url, options = {} }) {
    const socket = io(url, { forceNew: true, ...options });
    const id = nextSocket++;
    const events = [];
    const record = (name) => (...args) => {
      // Pings carry no data; pongs the latency, which varies: keep the name only.
      const kept = name === "ping" || name === "pong" ? [] : args.map(plain);
      events.push([name, ...kept]);
    };
    const onevent = socket.onevent;
    socket.onevent = function (packet) {
      // Every pushed event (with its data), whatever its name, before it is dispatched.
      const args = (packet.data || []).map(plain);
      events.push(args);
      onevent.call(this, packet);
    };
    for (const name of ["connect", "disconnect", "error", "connect_error", "connect_timeout"]) {
      socket.on(name, record(name));
    }
    for (const name of MANAGER_EVENTS) socket.io.on(name, record(name));
    const watchEngine = () => {
      const engine = socket.io.engine;
      if (engine && !engine.__watched) {
        engine.__watched = true;
        engine.on("upgrade", (transport) => events.push(["upgrade", transport.name]));
      }
    };
    socket.io.on("open", watchEngine);
    watchEngine();
    sockets.set(id, { socket, events });
    return id;
  },
  // {socket, event, args}: emit with an ack; answers the ack's arguments.
  emit(request) {
    const { socket } = socketOf(request);
    return new Promise((resolve) => {
      socket.emit(request.event, ...(request.args || []), (...reply) => resolve(reply.map(plain)));
    });
  },
  // Events recorded so far (kept: the test reads them as often as it likes).
  events(request) {
    return socketOf(request).events;
  },
  state(request) {
    const { socket } = socketOf(request);
    const engine = socket.io.engine;
    return {
      connected: socket.connected,
      id: socket.id || null,
      transport: engine && engine.transport ? engine.transport.name : null,
      engineId: engine ? engine.id : null,
      readyState: engine ? engine.readyState : null,
    };
  },
  // Cuts the engine's transport as a network failure would (the manager then reconnects).
  dropTransport(request) {
    const { socket } = socketOf(request);
    const transport = socket.io.engine.transport;
    if (transport.ws) transport.ws.terminate();
    else transport.onError("transport dropped by the test");
    return transport.name;
  },
  close(request) {
    const { socket } = socketOf(request);
    socket.close();
    return true;
  },
};

function plain(value) {
  return value === undefined ? null : value;
}

serve(operations, "ready", () => {
  for (const { socket } of sockets.values()) socket.close();
  process.exit(0);
});
