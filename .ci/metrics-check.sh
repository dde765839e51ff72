#!/usr/bin/env bash
# Starts the user-email example with Prometheus metrics on its gateway (OTEL_METRICS_EXPORTER=
# prometheus, PUREST_METRICS_TOKEN), makes a known number of calls and failures, and reads
# /metrics with the official Python client's parser (prometheus_client, installed from PyPI
# into a venv of its own): the counts must be exactly those calls.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${PUREST_CI_VENV:-$PWD/target/ci-venv}"
if ! "$venv/bin/python" -c 'import prometheus_client' 2>/dev/null; then
  echo "metrics-check: installing prometheus_client into $venv"
  [[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "prometheus-client==0.21.1"
fi

metrics_token="ci-metrics-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export OTEL_METRICS_EXPORTER=prometheus PUREST_METRICS_TOKEN="$metrics_token" OTEL_SERVICE_NAME=user-email
source .ci/example.sh
echo "metrics-check: example serving on $base"

register() {
  curl -sS -o /dev/null -w '%{http_code}' -X POST "$base/api/v1/users" \
    -H 'content-type: application/json' -d "{\"name\": \"Someone\", \"email\": \"$1\"}"
}
for call in "ann@example.com 200" "bob@example.com 200" "cy@example.com 200" "ann@example.com 409" "bob@example.com 409"; do
  read -r email expected <<<"$call"
  status=$(register "$email")
  if [[ "$status" != "$expected" ]]; then
    echo "metrics-check: registering $email answered $status, expected $expected"; exit 1
  fi
done

anonymous=$(curl -sS -o /dev/null -w '%{http_code}' "$base/metrics")
if [[ "$anonymous" != 401 ]]; then
  echo "metrics-check: /metrics without the token answered $anonymous, expected 401"; exit 1
fi

BASE="$base" TOKEN="$metrics_token" timeout 60 "$venv/bin/python" - <<'PY'
import os, time, urllib.request
from prometheus_client.parser import text_string_to_metric_families

def scrape():
    request = urllib.request.Request(os.environ["BASE"] + "/metrics", headers={"Authorization": "Bearer " + os.environ["TOKEN"]})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4"), response.headers["Content-Type"]
        return {family.name: family for family in text_string_to_metric_families(response.read().decode())}

def value(families, family, sample, **labels):
    found = [s.value for s in families[family].samples if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, (sample, labels, found)
    return found[0] if found else 0.0

register = {"purest_handler": "user/1/registerNewUser"}
welcome = {"purest_handler": "email/1/sendWelcomeMail"}
duration = "messaging_process_duration_seconds"
# The welcome mails are sent after the answers: wait for the three deliveries.
deadline = time.monotonic() + 30
while True:
    families = scrape()
    if duration in families and value(families, duration, duration + "_count", purest_outcome="ack", **welcome) >= 3:
        break
    assert time.monotonic() < deadline, "the three welcome mails were not counted within 30 s"
    time.sleep(0.1)

checks = [
    (value(families, duration, duration + "_count", purest_outcome="200", **register), 3.0, "registrations answered 200"),
    (value(families, duration, duration + "_count", purest_outcome="409", **register), 2.0, "registrations answered 409"),
    (value(families, duration, duration + "_count", purest_outcome="ack", **welcome), 3.0, "welcome mails delivered"),
    (value(families, duration, duration + "_count", purest_outcome="retry", **welcome), 0.0, "welcome mails retried"),
    (value(families, "purest_handler_in_flight", "purest_handler_in_flight", **register), 0.0, "registrations in flight"),
    (value(families, "messaging_client_sent_messages", "messaging_client_sent_messages_total", purest_message_kind="command"), 5.0, "commands sent by the gateway"),
    (value(families, "messaging_client_consumed_messages", "messaging_client_consumed_messages_total", purest_message_kind="event"), 3.0, "events consumed"),
]
for got, expected, what in checks:
    assert got == expected, f"{what}: {got}, expected {expected}"
slow = value(families, duration, duration + "_bucket", purest_outcome="200", le="+Inf", **register)
assert slow == 3.0, f"the histogram's +Inf bucket holds every registration: {slow}"
assert families["target_info"].samples[0].labels["service_name"] == "user-email", families["target_info"].samples
print("metrics-check: " + "; ".join(f"{what} {int(got)}" for got, _, what in checks))
PY

fail_if_panicked metrics-check
echo "metrics-check: passed"
