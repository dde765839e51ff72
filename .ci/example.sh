# Sourced by the CI checks: starts the user-email example with its HTTP gateway on a free
# loopback port and makes HS256 tokens for it. Sets `base` (http://127.0.0.1:PORT), `secret`,
# `work` (a temporary directory holding the example's logs) and stops the example on exit.

cargo build --quiet -p user-email
work=$(mktemp -d)
secret="ci-only-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PUREST_HTTP=127.0.0.1:0 PUREST_HTTP_JWT_SECRET="$secret" RUST_LOG=warn,purest=info \
  ./target/debug/user-email --serve >"$work/stdout.log" 2>"$work/stderr.log" &
server=$!
stop_example() { kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"; }
trap stop_example EXIT

base=""
for _ in $(seq 1 100); do
  base=$(grep -o 'listening on http://[0-9.:]*' "$work/stderr.log" | head -1 | sed 's/listening on //') || true
  [[ -n "$base" ]] && break
  sleep 0.1
done
if [[ -z "$base" ]]; then
  echo "ci: the example did not start its gateway"; cat "$work/stderr.log"; exit 1
fi

# hs256_token SUBJECT: a token valid for an hour, made with Python's standard library only.
hs256_token() {
  SECRET="$secret" SUBJECT="$1" python3 - <<'PY'
import base64, hashlib, hmac, json, os, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": os.environ["SUBJECT"], "exp": int(time.time()) + 3600}).encode())
sig = hmac.new(os.environ["SECRET"].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b64(sig)}")
PY
}

# fail_if_panicked CHECK: fails the check when the example panicked meanwhile.
fail_if_panicked() {
  if grep -q 'panicked' "$work/stderr.log"; then
    echo "$1: the example panicked"; grep -A5 panicked "$work/stderr.log"; exit 1
  fi
}
