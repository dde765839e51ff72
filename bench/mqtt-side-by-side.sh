#!/usr/bin/env bash
# MQTT 5 figures in one sitting, one after the other: purest round trips (client and ServiceB in
# two processes), the same bytes on the same topics with plain rumqttc (QoS 1 both ways), and
# durable events through a persistent session with PUBACKs and manual acks. Uses the broker at
# $MQTT_URL, or else starts a Mosquitto of its own on a free port with `set_tcp_nodelay true`
# (without it the broker holds a small write back until the last is acked: some 44 ms a lone
# round trip, for both sides); writes raw output to bench/results/<time>-mqtt/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/results/$(date -u +%Y-%m-%dT%H%M)-mqtt}"
mkdir -p "$out"
if [ -n "${MQTT_URL:-}" ]; then
  url="$MQTT_URL"
else
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n' "$port" >"$out/mosquitto.conf"
  mosquitto -c "$out/mosquitto.conf" >"$out/mosquitto.log" 2>&1 &
  broker=$!
  trap 'kill "$broker"' EXIT
  for _ in $(seq 1 50); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
  url="mqtt://127.0.0.1:$port"
fi
cargo build --profile profiling -p purest-bench >/dev/null
bin=./target/profiling/purest-bench-mqtt

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
