#!/usr/bin/env bash
# HTTP figures in one sitting with wrk on loopback: a raw axum hello world (the baseline), then the
# purest gateway in front of in-memory commands — GET (a string out) and POST (a validated JSON
# payload in, a JSON object out). Three runs each, alternating; writes raw output to
# bench/results/<time>-http/. Needs wrk (Debian package `wrk`). BEFORE=<dir> adds the gateway of an
# earlier build (its purest-bench-http) to each round.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
out="${OUT:-bench/results/$(date -u +%Y-%m-%dT%H%M)-http}"
connections="${CONNECTIONS:-100}"
duration="${DURATION:-10s}"
mkdir -p "$out"
cargo build --profile profiling -p purest-bench >/dev/null
bin=./target/profiling/purest-bench-http

"$bin" raw --listen 127.0.0.1:0 >"$out/raw-server.log" 2>&1 &
raw_pid=$!
"$bin" purest --listen 127.0.0.1:0 >"$out/purest-server.log" 2>&1 &
purest_pid=$!
# BEFORE: a directory holding purest-bench-http of an earlier build, run beside this one.
before_pid=
if [[ -n ${BEFORE:-} ]]; then
  "$BEFORE/purest-bench-http" purest --listen 127.0.0.1:0 >"$out/before-server.log" 2>&1 &
  before_pid=$!
fi
trap 'kill -TERM $raw_pid $purest_pid $before_pid 2>/dev/null || true' EXIT
address() { for _ in $(seq 1 100); do grep -o 'http://[0-9.:]*' "$1" && return; sleep 0.1; done; return 1; }
raw=$(address "$out/raw-server.log")
purest=$(address "$out/purest-server.log")
[[ -n $before_pid ]] && before=$(address "$out/before-server.log")

post=$(mktemp)
cat >"$post" <<'LUA'
wrk.method = "POST"
wrk.body = '{"seq": 42}'
wrk.headers["Content-Type"] = "application/json"
LUA

run() { # label, url, extra args
  local label=$1 url=$2; shift 2
  wrk -t1 -c"$connections" -d"$duration" --latency "$@" "$url" >"$out/$label-$run.txt"
  printf '%-14s run %s  %s req/s  p50 %s  p99 %s\n' "$label" "$run" \
    "$(awk '/Requests\/sec/ {print $2}' "$out/$label-$run.txt")" \
    "$(awk '$1=="50%" {print $2}' "$out/$label-$run.txt")" \
    "$(awk '$1=="99%" {print $2}' "$out/$label-$run.txt")"
}
for run in 1 2 3; do
  run raw-axum "$raw/"
  run purest-get "$purest/api/v1/hello"
  run purest-post "$purest/api/v1/ping" -s "$post"
  if [[ -n $before_pid ]]; then
    run before-get "$before/api/v1/hello"
    run before-post "$before/api/v1/ping" -s "$post"
  fi
done | tee "$out/summary.txt"
rm -f "$post"
echo "raw output in $out"
