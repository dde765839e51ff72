#!/usr/bin/env bash
# What telemetry costs, in one sitting: the in-process benchmark and purest over NATS (client and
# ServiceB in two processes), each with telemetry off, traces of every request, traces of 1 %,
# and metrics; ROUNDS (default 2) rounds alternating the modes. Uses the NATS server at
# $NATS_URL (default nats://127.0.0.1:4222); writes raw output to bench/results/<time>-telemetry/.
set -euo pipefail
cd "$(dirname "$0")/.."
url="${NATS_URL:-nats://127.0.0.1:4222}"
out="${OUT:-bench/results/$(date -u +%Y-%m-%dT%H%M)-telemetry}"
modes=(${MODES:-off traces traces1 metrics})
mkdir -p "$out"
cargo build --profile profiling -p purest-bench >/dev/null
inprocess=./target/profiling/purest-bench
nats=./target/profiling/purest-bench-nats

for round in $(seq 1 "${ROUNDS:-2}"); do
  for mode in "${modes[@]}"; do
    echo "== round $round, in process, telemetry $mode"
    "$inprocess" --telemetry "$mode" --n 100000 --events 100000 --repeat 3 | tee "$out/inprocess-$mode-$round.txt"
  done
  for mode in "${modes[@]}"; do
    echo "== round $round, NATS, telemetry $mode"
    "$nats" --url "$url" --telemetry "$mode" serve >"$out/nats-serve-$mode-$round.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do grep -q ready "$out/nats-serve-$mode-$round.log" && break; sleep 0.1; done
    "$nats" --url "$url" --telemetry "$mode" drive --repeat 3 | tee "$out/nats-$mode-$round.txt"
    kill -TERM "$pid"; wait "$pid" || true
  done
done
echo "raw output in $out"
