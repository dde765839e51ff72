#!/usr/bin/env bash
# Starts the user-email example with its HTTP gateway and checks its API description with tools
# real users run: the OpenAPI validator (openapi-spec-validator) and schemathesis with all its
# default checks (zero failures, zero server errors). Installs both from PyPI into a venv of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${PUREST_CI_VENV:-$PWD/target/ci-venv}"
if [[ ! -x "$venv/bin/schemathesis" ]]; then
  echo "http-checks: installing schemathesis and openapi-spec-validator into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5" "openapi-spec-validator==0.9.0"
fi

source .ci/example.sh
echo "http-checks: example serving on $base"

echo "http-checks: openapi-spec-validator"
curl -fsS "$base/api/openapi.json" | "$venv/bin/openapi-spec-validator" -

token=$(hs256_token schemathesis)

echo "http-checks: schemathesis (all default checks)"
(cd "$work" && timeout 900 "$venv/bin/schemathesis" run "$base/api/openapi.json" \
  -H "Authorization: Bearer $token" --seed 42 --generation-database none \
  --max-examples 50 --workers 2 --request-timeout 10 --wait-for-schema 30 --no-color)

fail_if_panicked http-checks
echo "http-checks: passed"
