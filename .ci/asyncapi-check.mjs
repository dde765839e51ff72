// Validates an AsyncAPI document with the official parser (@asyncapi/parser): prints every
// diagnostic and fails on errors. Usage: node asyncapi-check.mjs FILE (with the parser installed
// next to this script's working directory, see .ci/spec-checks.sh).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.cwd() + "/");
const { Parser } = require("@asyncapi/parser");
const file = process.argv[2];
const { document, diagnostics } = await new Parser().parse(readFileSync(file, "utf8"));
const severities = ["error", "warning", "info", "hint"];
for (const d of diagnostics) {
  console.log(`${severities[d.severity] ?? d.severity}: ${d.message} at /${(d.path || []).join("/")}`);
}
const errors = diagnostics.filter((d) => d.severity === 0);
if (!document || errors.length > 0) {
  console.log(`asyncapi-check: ${file}: ${errors.length} error(s)`);
  process.exit(1);
}
console.log(`asyncapi-check: ${file}: valid AsyncAPI ${document.version()} (${diagnostics.length} non-error diagnostics)`);
