#!/usr/bin/env bash
# Event store figures in one sitting (see bench/src/bin/purest-bench-eventstore.rs): appends by 1
# and 16 writers beside raw sqlx inserting the same rows, stream reads beside the same SELECT,
# projection catch-up, and the outbox relay to NATS. Uses the database at $DATABASE_URL (default:
# the machine's PostgreSQL, database test) and NATS at $NATS_URL; each run works in a schema of
# its own and drops it. Writes the table to bench/results/<time>-eventstore/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/results/$(date -u +%Y-%m-%dT%H%M)-eventstore}"
mkdir -p "$out"
cargo build --profile profiling -p purest-bench --bin purest-bench-eventstore >/dev/null
./target/profiling/purest-bench-eventstore \
  --database "${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}" \
  --nats "${NATS_URL:-nats://127.0.0.1:4222}" \
  --seconds "${SECONDS_EACH:-5}" --rounds "${ROUNDS:-3}" | tee "$out/table.md"
psql "${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}" -Atc "SELECT version()" >"$out/postgres.txt" 2>/dev/null || true
echo "table in $out/table.md"
