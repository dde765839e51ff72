#!/usr/bin/env bash
# The CLI as a user meets it: `purest asyncapi` of the example checked by the official AsyncAPI
# parser (@asyncapi/parser from npm), and `purest new` + `purest add` producing a project that
# builds and passes its tests offline, from the local crate cache.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --quiet -p purest-cli -p user-email
purest="$repo/target/debug/purest"

node_dir="${PUREST_CI_NODE:-$repo/target/ci-node}"
if [[ ! -d "$node_dir/node_modules/@asyncapi/parser" ]]; then
  echo "spec-checks: installing @asyncapi/parser into $node_dir"
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-audit --no-fund --silent "@asyncapi/parser@3.6.6"
fi
echo "spec-checks: purest asyncapi (user-email) → @asyncapi/parser"
"$purest" asyncapi --exe target/debug/user-email --title "user-email" -o "$work/asyncapi.json"
(cd "$node_dir" && node "$repo/.ci/asyncapi-check.mjs" "$work/asyncapi.json")

echo "spec-checks: purest new demo, purest add …, cargo test --offline"
(
  cd "$work"
  "$purest" new demo --purest-path "$repo/crates/purest"
  cd demo
  "$purest" add service billing
  "$purest" add command createInvoice --service billing
  "$purest" add subscription sendInvoice --service billing --event invoiceCreated
  # The project's own lock file, resolved from the local cache; artifacts shared with the repo's.
  CARGO_TARGET_DIR="$repo/target" cargo test --offline --quiet
  CARGO_TARGET_DIR="$repo/target" CARGO_NET_OFFLINE=true "$purest" graph
)
echo "spec-checks: passed"
