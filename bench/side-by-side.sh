#!/usr/bin/env bash
# Runs purest's in-process benchmark and the PURISTA and Moleculer peer benchmarks in one sitting,
# one after the other (never at the same time), and writes their raw output to $OUT (default
# bench/results/<date>). The figures in bench/README.md come from one such run.
#
#   ROUNDS=3 bash bench/side-by-side.sh   # needs node + npm; peers from ../shared/peer-bench
set -euo pipefail
cd "$(dirname "$0")/.."
peers="${PEERS:-../shared/peer-bench}"
out="${OUT:-bench/results/$(date -u +%Y-%m-%dT%H%M)}"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --profile profiling -p purest-bench >/dev/null
for peer in purista moleculer; do
  cp -r "$peers/$peer" "$work/$peer"
  (cd "$work/$peer" && npm install --no-audit --no-fund >/dev/null 2>&1)
done

# ROUNDS (default 1) rounds of purest then Moleculer, alternating; PURISTA once (SKIP_PURISTA=1
# leaves it out: it is two orders of magnitude slower, and its runs take minutes).
for round in $(seq 1 "${ROUNDS:-1}"); do
  echo "== purest (round $round)" | tee -a "$out/purest.txt"
  ./target/profiling/purest-bench --repeat 3 --json "$out/purest-$round.json" | tee -a "$out/purest.txt"
  # BEFORE: a directory holding purest-bench of an earlier build, run in each round too.
  if [[ -n ${BEFORE:-} ]]; then
    echo "== before (round $round)" | tee -a "$out/before.txt"
    "$BEFORE/purest-bench" --repeat 3 | tee -a "$out/before.txt"
  fi
  echo "== Moleculer (local, round $round)" | tee -a "$out/moleculer.txt"
  (cd "$work/moleculer" && node --expose-gc bench.mjs --only=local) 2>&1 | tee -a "$out/moleculer.txt"
done
if [[ -z ${SKIP_PURISTA:-} ]]; then
  echo "== PURISTA" | tee "$out/purista.txt"
  (cd "$work/purista" && node bench.mjs --repeat 3) 2>&1 | tee -a "$out/purista.txt"
fi
echo "raw output in $out"
