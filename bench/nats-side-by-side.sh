#!/usr/bin/env bash
# NATS figures in one sitting, one after the other: purest round trips (client and ServiceB in two
# processes), the same bytes over plain async-nats request/reply, durable events through
# JetStream, and Moleculer over NATS from ../shared/peer-bench. Uses the NATS server at $NATS_URL
# (default nats://127.0.0.1:4222); writes raw output to bench/results/<time>-nats/.
set -euo pipefail
cd "$(dirname "$0")/.."
url="${NATS_URL:-nats://127.0.0.1:4222}"
peers="${PEERS:-../shared/peer-bench}"
out="${OUT:-bench/results/$(date -u +%Y-%m-%dT%H%M)-nats}"
mkdir -p "$out"
cargo build --profile profiling -p purest-bench >/dev/null
bin=./target/profiling/purest-bench-nats

serve_and_drive() { # $1 serve mode, $2 drive mode, $3 output file, $4 binary (default this build's)
  local b=${4:-$bin}
  "$b" --url "$url" "$1" >"$out/$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do grep -q ready "$out/$1.log" && break; sleep 0.1; done
  "$b" --url "$url" "$2" --repeat 3 | tee "$3"
  kill -TERM "$pid"; wait "$pid" || true
}

# ROUNDS (default 1) rounds of purest then the raw client, alternating; then durable events and
# Moleculer once (SKIP_PEERS=1 leaves Moleculer out).
for round in $(seq 1 "${ROUNDS:-1}"); do
  serve_and_drive serve drive "$out/purest-$round.txt"
  serve_and_drive raw-serve raw-drive "$out/raw-$round.txt"
  # BEFORE: a directory holding purest-bench-nats of an earlier build, run in each round too.
  if [[ -n ${BEFORE:-} ]]; then
    serve_and_drive serve drive "$out/before-$round.txt" "$BEFORE/purest-bench-nats" | sed 's/^purest/before/'
  fi
done
"$bin" --url "$url" durable | tee "$out/durable.txt"
[[ -n ${SKIP_PEERS:-} ]] && { echo "raw output in $out"; exit 0; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$peers/moleculer" "$work/moleculer"
(cd "$work/moleculer" && npm install --no-audit --no-fund >/dev/null 2>&1 && NATS_URL="$url" node --expose-gc bench.mjs --only=nats) 2>&1 | tee "$out/moleculer.txt"
echo "raw output in $out"
