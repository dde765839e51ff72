#!/usr/bin/env bash
# Redis figures in one sitting, one after the other: purest round trips (client and ServiceB in
# two processes), the same bytes in the same keys with plain redis-rs, and durable events through
# a consumer group with XACK after the handler. Uses the server at $REDIS_URL, or else starts a
# redis-server of its own on a free port (append-only file, fsynced every second: Redis' own
# advice for durability); writes raw output to bench/results/<time>-redis/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/results/$(date -u +%Y-%m-%dT%H%M)-redis}"
mkdir -p "$out"
if [ -n "${REDIS_URL:-}" ]; then
  url="$REDIS_URL"
else
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$out/data"
  here=$(cd "$out" && pwd)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
    --dir "$here/data" --logfile "$here/redis.log" &
  server=$!
  trap 'kill "$server"; rm -rf "$out/data"' EXIT
  for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  url="redis://127.0.0.1:$port"
fi
prefix="bench$(date +%s)"
cargo build --profile profiling -p purest-bench >/dev/null
bin=./target/profiling/purest-bench-redis

serve_and_drive() { # $1 serve mode, $2 drive mode, $3 output file
  "$bin" --url "$url" --prefix "$prefix" "$1" >"$out/$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do grep -q ready "$out/$1.log" && break; sleep 0.1; done
  "$bin" --url "$url" --prefix "$prefix" "$2" --repeat 3 | tee "$3"
  kill -TERM "$pid"; wait "$pid" || true
}

# ROUNDS (default 1) rounds of purest then the raw client, alternating; then durable events once.
for round in $(seq 1 "${ROUNDS:-1}"); do
  serve_and_drive serve drive "$out/purest-$round.txt"
  serve_and_drive raw-serve raw-drive "$out/raw-$round.txt"
done
"$bin" --url "$url" --prefix "$prefix" durable | tee "$out/durable.txt"
echo "raw output in $out"
