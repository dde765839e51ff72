#!/usr/bin/env bash
# The invite flow end to end, with wrk on loopback: HTTP POST → resolver → invite-customer LOW
# handler (lookup, operate, write + event in one unit) → outbox relay → projector → announcement
# → resolver → query → the response with the projected customer. Every request invites a new
# email. (a) examples/invite-customer in one process, in memory; (b) the same binary in one
# process on NATS with the PostgreSQL event store (a schema of its own, dropped at the end).
# Three runs each, alternating; raw output in bench/results/<time>-invite/. Needs wrk (Debian
# package `wrk`), the machine's PostgreSQL ($DATABASE_URL) and NATS ($NATS_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
out="${OUT:-bench/results/$(date -u +%Y-%m-%dT%H%M)-invite}"
connections="${CONNECTIONS:-50}"
duration="${DURATION:-10s}"
database="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
nats="${NATS_URL:-nats://127.0.0.1:4222}"
schema="bench_invite_$(date +%s)"
mkdir -p "$out"
cargo build --profile profiling -p invite-customer >/dev/null
bin=./target/profiling/invite-customer

PUREST_HTTP=127.0.0.1:0 RUST_LOG=info "$bin" serve >"$out/a-server.log" 2>&1 &
a_pid=$!
INVITE_DATABASE="$database" INVITE_SCHEMA="$schema" PUREST_BRIDGE="$nats" PUREST_HTTP=127.0.0.1:0 RUST_LOG=info \
  "$bin" serve >"$out/b-server.log" 2>&1 &
b_pid=$!
cleanup() {
  kill -TERM $a_pid $b_pid 2>/dev/null || true
  wait $a_pid $b_pid 2>/dev/null || true
  psql "$database" -qc "DROP SCHEMA IF EXISTS \"$schema\" CASCADE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
address() { for _ in $(seq 1 200); do grep -o 'http://[0-9.:]*' "$1" && return; sleep 0.1; done; return 1; }
a=$(address "$out/a-server.log")
b=$(address "$out/b-server.log")

scripts=$(mktemp -d)
run() { # label, base url
  local label=$1 url=$2 script="$scripts/$1-$run.lua"
  cat >"$script" <<LUA
n, answered, other = 0, 0, 0
function request()
  n = n + 1
  local body = string.format('{"email":"$label-$run-%d@bench.example","name":"Bench"}', n)
  return wrk.format("POST", "/api/v1/customers", {["Content-Type"] = "application/json"}, body)
end
function response(status)
  if status == 200 then answered = answered + 1 else other = other + 1 end
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done()
  for _, thread in ipairs(threads) do
    io.write(string.format("answered 200: %d, other: %d\n", thread:get("answered"), thread:get("other")))
  end
end
LUA
  wrk -t1 -c"$connections" -d"$duration" --latency -s "$script" "$url" >"$out/$label-$run.txt"
  printf '%-10s run %s  %s req/s  p50 %s  p99 %s  %s\n' "$label" "$run" \
    "$(awk '/Requests\/sec/ {print $2}' "$out/$label-$run.txt")" \
    "$(awk '$1=="50%" {print $2}' "$out/$label-$run.txt")" \
    "$(awk '$1=="99%" {print $2}' "$out/$label-$run.txt")" \
    "$(grep -o 'answered 200: [0-9]*, other: [0-9]*' "$out/$label-$run.txt")"
}
for run in 1 2 3; do
  run a-memory "$a"
  run b-nats-pg "$b"
done | tee "$out/summary.txt"
rm -rf "$scripts"
psql "$database" -Atc "SELECT version()" >"$out/postgres.txt" 2>/dev/null || true
echo "raw output in $out"
