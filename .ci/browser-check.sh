#!/usr/bin/env bash
# A real browser against the example's WebSocket gateway: headless Chromium (Debian's package,
# installed when missing) driven by playwright-core (npm, pinned in .ci/browser) loads a page served
# on loopback that connects to /ws with a bearer token offered as a subprotocol, subscribes to
# newUserRegistered, registers a user and sees the event pushed.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  echo "browser-check: installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends chromium >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; }
fi
if [[ ! -d .ci/browser/node_modules/playwright-core ]]; then
  echo "browser-check: installing playwright-core (npm ci)"
  (cd .ci/browser && npm ci --no-audit --no-fund --silent)
fi

source .ci/example.sh
echo "browser-check: example serving on $base"
CHROMIUM="$chromium" timeout 180 node .ci/browser/ws-check.mjs "$base" "$(hs256_token browser-user)"
fail_if_panicked browser-check
echo "browser-check: passed"
