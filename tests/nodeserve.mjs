// The Node end of a test driver (tests/nodedriver.py is the Python end): one JSON request
// a line on stdin ({id, op, ...}) runs `operations[op](request)` (async allowed) and is
// answered with one JSON line on stdout ({id, ok, value} or {id, ok: false, error}).
// The first line (id 0) says the driver is ready; stdin closing runs `onClose`.
import readline from "node:readline";

function reply(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

export function serve(operations, readyValue, onClose) {
  reply({ id: 0, ok: true, value: readyValue });
  const lines = readline.createInterface({ input: process.stdin });
  lines.on("line", async (line) => {
    let request;
    try {
      request = JSON.parse(line);
    } catch (error) {
      reply({ id: null, ok: false, error: `bad request line: ${error.message}` });
      return;
    }
    const operation = operations[request.op];
    if (!operation) {
      reply({ id: request.id, ok: false, error: `unknown op ${request.op}` });
      return;
    }
    try {
      const value = await operation(request);
      reply({ id: request.id, ok: true, value: value === undefined ? null : value });
    } catch (error) {
      reply({ id: request.id, ok: false, error: String(error && error.message ? error.message : error) });
    }
  });
  lines.on("close", onClose);
}
