#!/usr/bin/env bash
# RabbitMQ figures in one sitting, one after the other: purest round trips (client and ServiceB in
# two processes), the same bytes on the same layout with plain lapin, and durable events through a
# quorum queue with publisher confirms and acks. Uses the RabbitMQ at $AMQP_URL (default
# amqp://guest:guest@127.0.0.1:5672/%2f); writes raw output to bench/results/<time>-amqp/.
set -euo pipefail
cd "$(dirname "$0")/.."
url="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
out="${OUT:-bench/results/$(date -u +%Y-%m-%dT%H%M)-amqp}"
mkdir -p "$out"
cargo build --profile profiling -p purest-bench >/dev/null
bin=./target/profiling/purest-bench-amqp

serve_and_drive() { # $1 serve mode, $2 drive mode, $3 output file
  "$bin" --url "$url" "$1" >"$out/$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do grep -q ready "$out/$1.log" && break; sleep 0.1; done
  "$bin" --url "$url" "$2" --repeat 3 | tee "$3"
  kill -TERM "$pid"; wait "$pid" || true
}

# ROUNDS (default 1) rounds of purest then the raw client, alternating; then durable events once.
for round in $(seq 1 "${ROUNDS:-1}"); do
  serve_and_drive serve drive "$out/purest-$round.txt"
  serve_and_drive raw-serve raw-drive "$out/raw-$round.txt"
done
"$bin" --url "$url" durable | tee "$out/durable.txt"
echo "raw output in $out"
