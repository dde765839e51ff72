#!/usr/bin/env bash
# Instructions per round trip, counted by valgrind's callgrind: the same total for the same binary
# and input whatever else the machine is doing, so before/after comparisons need no quiet machine.
#
# - NATS: the serving and the driving process of `purest-bench-nats`, and of the raw async-nats
#   baseline, each counted for N and 2N calls at C in flight; per round trip = (I(2N) - I(N)) / N,
#   so start-up and connection set-up cancel out. The broker (the NATS server at $NATS_URL,
#   default nats://127.0.0.1:4222) is not counted.
# - in-process: one command workload of `purest-bench` (the in-memory bridge), counted for N
#   and 2N calls the same way.
# - HTTP: the process of `purest-bench-http` (raw axum, and the gateway in front of an in-memory
#   command), counted once with no request and once under wrk; per request = the difference / the
#   requests wrk made.
#
# Writes the callgrind files and a summary to bench/results/<time>-callgrind/. Needs valgrind and
# wrk (Debian packages). N (default 10000), C (default 100) and BIN are variables.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
url="${NATS_URL:-nats://127.0.0.1:4222}"
n="${N:-10000}"
c="${C:-100}"
out="${OUT:-bench/results/$(date -u +%Y-%m-%dT%H%M)-callgrind}"
mkdir -p "$out"
# BIN: a directory holding the three benchmark binaries of another build (to count a commit
# before a change); by default this checkout's, built here.
bin="${BIN:-}"
if [[ -z $bin ]]; then
  cargo build --profile profiling -p purest-bench >/dev/null
  bin=./target/profiling
fi
nats=$bin/purest-bench-nats
http=$bin/purest-bench-http
inprocess=$bin/purest-bench
count() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
wait_for() { for _ in $(seq 1 600); do grep -q "$2" "$1" && return; sleep 0.2; done; echo "no '$2' in $1"; exit 1; }

# nats_side LABEL SERVE DRIVE CALLS: counts both processes for one drive of CALLS calls.
nats_side() {
  local label=$1 serve=$2 drive=$3 calls=$4
  valgrind --tool=callgrind --callgrind-out-file="$out/$label-serve-$calls.cg" "$nats" --url "$url" "$serve" >"$out/$label-serve.log" 2>&1 &
  local pid=$!
  wait_for "$out/$label-serve.log" ready
  valgrind --tool=callgrind --callgrind-out-file="$out/$label-drive-$calls.cg" "$nats" --url "$url" "$drive" \
    --n "$calls" --concurrency "$c" --repeat 1 --concurrent-only >"$out/$label-drive-$calls.log" 2>&1
  kill -TERM "$pid"; wait "$pid" || true
}

for label in purest raw; do
  serve=serve drive=drive
  [[ $label == raw ]] && serve=raw-serve drive=raw-drive
  nats_side "$label" "$serve" "$drive" "$n"
  nats_side "$label" "$serve" "$drive" $((2 * n))
  for side in serve drive; do
    once=$(count "$out/$label-$side-$n.cg"); twice=$(count "$out/$label-$side-$((2 * n)).cg")
    printf 'NATS %-6s %-5s %8d instructions per round trip (%d in flight)\n' "$label" "$side" $(((twice - once) / n)) "$c"
  done
done | tee "$out/summary.txt"

# In-process: `purest-bench --only WORKLOAD` runs N calls at 1 and N at C in flight; counted for
# N and 2N, per call = the difference / 2N.
for workload in unvalidated validated; do
  for calls in "$n" $((2 * n)); do
    valgrind --tool=callgrind --callgrind-out-file="$out/inprocess-$workload-$calls.cg" "$inprocess" \
      --only "$workload" --n "$calls" --concurrency "$c" --repeat 1 >"$out/inprocess-$workload-$calls.log" 2>&1
  done
  once=$(count "$out/inprocess-$workload-$n.cg"); twice=$(count "$out/inprocess-$workload-$((2 * n)).cg")
  printf 'in-process %-11s %8d instructions per round trip (half at 1, half at %d in flight)\n' "$workload" $(((twice - once) / (2 * n))) "$c"
done | tee -a "$out/summary.txt"

# http_side LABEL MODE PATH [WRK ARGS]: the process with no request, then under wrk.
post=$(mktemp)
trap 'rm -f "$post"' EXIT
cat >"$post" <<'LUA'
wrk.method = "POST"
wrk.body = '{"seq": 42}'
wrk.headers["Content-Type"] = "application/json"
LUA
http_side() {
  local label=$1 mode=$2 path=$3
  shift 3
  valgrind --tool=callgrind --callgrind-out-file="$out/http-$label-idle.cg" "$http" "$mode" --listen 127.0.0.1:0 >"$out/http-$label-idle.log" 2>&1 &
  local pid=$!
  wait_for "$out/http-$label-idle.log" listening
  kill -TERM "$pid"; wait "$pid" || true
  valgrind --tool=callgrind --callgrind-out-file="$out/http-$label-load.cg" "$http" "$mode" --listen 127.0.0.1:0 >"$out/http-$label-load.log" 2>&1 &
  pid=$!
  wait_for "$out/http-$label-load.log" listening
  local base
  base=$(grep -o 'http://[0-9.:]*' "$out/http-$label-load.log" | head -1)
  wrk -t1 -c4 -d20s "$@" "$base$path" >"$out/http-$label-wrk.txt"
  kill -TERM "$pid"; wait "$pid" || true
  local requests idle load
  requests=$(awk '/requests in/ {print $1}' "$out/http-$label-wrk.txt")
  idle=$(count "$out/http-$label-idle.cg"); load=$(count "$out/http-$label-load.cg")
  printf 'HTTP %-11s %8d instructions per request (%d requests)\n' "$label" $(((load - idle) / requests)) "$requests"
}
{
  http_side raw-axum raw /
  http_side purest-get purest /api/v1/hello
  http_side purest-post purest /api/v1/ping -s "$post"
} | tee -a "$out/summary.txt"
echo "callgrind files and summary in $out"
