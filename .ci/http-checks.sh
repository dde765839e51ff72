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

cargo build --quiet -p user-email
work=$(mktemp -d)
secret="ci-only-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PUREST_HTTP=127.0.0.1:0 PUREST_HTTP_JWT_SECRET="$secret" RUST_LOG=warn,purest=info \
  ./target/debug/user-email --serve >"$work/stdout.log" 2>"$work/stderr.log" &
server=$!
cleanup() { kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

base=""
for _ in $(seq 1 100); do
  base=$(grep -o 'listening on http://[0-9.:]*' "$work/stderr.log" | head -1 | sed 's/listening on //') || true
  [[ -n "$base" ]] && break
  sleep 0.1
done
if [[ -z "$base" ]]; then
  echo "http-checks: the example did not start its gateway"; cat "$work/stderr.log"; exit 1
fi
echo "http-checks: example serving on $base"

echo "http-checks: openapi-spec-validator"
curl -fsS "$base/api/openapi.json" | "$venv/bin/openapi-spec-validator" -

# An HS256 token for the protected operations, made with the standard library only.
token=$(SECRET="$secret" python3 - <<'EOF'
import base64, hashlib, hmac, json, os, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "schemathesis", "exp": int(time.time()) + 3600}).encode())
sig = hmac.new(os.environ["SECRET"].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b64(sig)}")
EOF
)

echo "http-checks: schemathesis (all default checks)"
(cd "$work" && timeout 900 "$venv/bin/schemathesis" run "$base/api/openapi.json" \
  -H "Authorization: Bearer $token" --seed 42 --generation-database none \
  --max-examples 50 --workers 2 --request-timeout 10 --wait-for-schema 30 --no-color)

if grep -q 'panicked' "$work/stderr.log"; then
  echo "http-checks: the example panicked"; grep -A5 panicked "$work/stderr.log"; exit 1
fi
echo "http-checks: passed"
