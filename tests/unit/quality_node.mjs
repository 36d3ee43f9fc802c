// Helper for tests/unit/test_connection_quality.py: the page's own classification
// (connectionQuality in web/js/tessera.js), run by Node. Reads a JSON list of figures
// ({loss, rtt, limited}) on stdin and prints the list of their levels.
import { connectionQuality } from "../../web/js/tessera.js";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const levels = JSON.parse(input).map((figures) => connectionQuality(figures));
process.stdout.write(JSON.stringify(levels));
