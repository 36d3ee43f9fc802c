// Cross-check helper for tests/unit/test_binarypack.py: the real peerjs-js-binarypack (npm).
// Reads {"pack": [values...], "unpack": [hex...]} as JSON on stdin and prints
// {"packed": [hex...], "unpacked": [values...]}. Binary values travel as {"$bytes": hex}.
import { pack, unpack } from "../../node_modules/peerjs-js-binarypack/dist/binarypack.mjs";

const toHex = (buffer) => Buffer.from(buffer).toString("hex");
const fromHex = (hex) => new Uint8Array(Buffer.from(hex, "hex")).buffer;

// JSON with {"$bytes": hex} -> JS values with ArrayBuffers, and back.
const revive = (value) => {
  if (Array.isArray(value)) return value.map(revive);
  if (value && typeof value === "object") {
    if (typeof value.$bytes === "string") return fromHex(value.$bytes);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]));
  }
  return value;
};
const tag = (value) => {
  if (value instanceof ArrayBuffer) return { $bytes: toHex(value) };
  if (Array.isArray(value)) return value.map(tag);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, tag(v)]));
  }
  return value === undefined ? null : value;
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
const request = JSON.parse(input);
const packed = (request.pack || []).map((value) => toHex(pack(revive(value))));
const unpacked = (request.unpack || []).map((hex) => tag(unpack(fromHex(hex))));
process.stdout.write(JSON.stringify({ packed, unpacked }));
