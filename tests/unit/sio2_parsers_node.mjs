// Cross-check helper for tests/unit/test_engineio3.py and test_socketio4.py: the parsers
// socket.io-client 2.x itself uses (engine.io-parser 2.x, socket.io-parser 3.x), resolved
// from the npm package `socket.io-client-2` as the client resolves them.
// Reads JSON on stdin and prints JSON on stdout:
//   {"encodePayload": [[[type, data], ...], ...]}  -> {"payloads": [text, ...]}
//   {"decodePayload": [text, ...]}                 -> {"decoded": [[[type, data], ...] | "error", ...]}
//   {"encodeSocketIO": [{type, nsp, id, data}, ...]} -> {"encoded": [text, ...]}
//   {"decodeSocketIO": [text, ...]}                -> {"packets": [{type, nsp, id, data} | "error", ...]}
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const clientRequire = createRequire(require.resolve("socket.io-client-2"));
const engineParser = createRequire(clientRequire.resolve("engine.io-client"))("engine.io-parser");
const socketParser = clientRequire("socket.io-parser");

const NAMES = ["open", "close", "ping", "pong", "message", "upgrade", "noop"];

let input = "";
for await (const chunk of process.stdin) input += chunk;
const request = JSON.parse(input);
const answer = {};

answer.payloads = (request.encodePayload || []).map((packets) => {
  let out;
  const list = packets.map(([type, data]) => (data === null ? { type: NAMES[type] } : { type: NAMES[type], data }));
  engineParser.encodePayload(list, false, (text) => { out = text; });
  return out;
});

answer.decoded = (request.decodePayload || []).map((text) => {
  const packets = [];
  let failed = false;
  engineParser.decodePayload(text, (packet) => {
    if (packet.type === "error") { failed = true; return false; }
    packets.push([NAMES.indexOf(packet.type), packet.data === undefined ? null : packet.data]);
    return true;
  });
  return failed ? "error" : packets;
});

answer.encoded = (request.encodeSocketIO || []).map((packet) => {
  let out;
  const encoder = new socketParser.Encoder();
  const obj = { type: packet.type, nsp: packet.nsp || "/" };
  if (packet.id !== undefined && packet.id !== null) obj.id = packet.id;
  if (packet.data !== undefined && packet.data !== null) obj.data = packet.data;
  encoder.encode(obj, (encoded) => { out = encoded[0]; });
  return out;
});

answer.packets = (request.decodeSocketIO || []).map((text) => {
  const decoder = new socketParser.Decoder();
  let decoded = "error";
  decoder.on("decoded", (packet) => {
    decoded = packet.type === socketParser.ERROR && packet.data === "parser error"
      ? "error"
      : { type: packet.type, nsp: packet.nsp, id: packet.id === undefined ? null : packet.id,
          data: packet.data === undefined ? null : packet.data };
  });
  try {
    decoder.add(text);
  } catch (error) {
    decoded = "error";
  }
  return decoded;
});

process.stdout.write(JSON.stringify(answer));
