#!/usr/bin/env bash
# Smoke test: the real binary serving the example api/ folder, driven with curl.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cargo build --quiet
scripts/build-examples.sh >/dev/null
bin="${CARGO_TARGET_DIR:-$root/target}/debug/watchdog"

log=$(mktemp)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  rm -f "$log"
}
trap cleanup EXIT

# The address the server logging to $log listens on, once it says so.
listening_addr() {
  local addr=""
  for _ in $(seq 1 100); do
    addr=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  echo "$addr"
}

"$bin" serve api --listen 127.0.0.1:0 2>"$log" &
pid=$!
addr=$(listening_addr)
[ -n "$addr" ] || { echo "smoke: watchdog did not start:"; cat "$log"; exit 1; }
base="http://$addr"

failures=0
passes=0
check() { # name, expected substring, curl args...
  local name=$1 want=$2; shift 2
  local got
  got=$(curl -sS --max-time 10 "$@" 2>&1) || true
  if [[ "$got" == *"$want"* ]]; then
    echo "ok   $name"
    passes=$((passes + 1))
  else
    echo "FAIL $name: wanted '$want', got: $got"
    failures=$((failures + 1))
  fi
}

check "shell function" "Hello, Ada!" "$base/api/hello?name=Ada"
check "extension in URL" "Hello, world!" "$base/api/hello.sh"
check "route parameter + JSON" '"name": "Douglas Adams"' "$base/api/users/42"
check "404 from the function" "HTTP/1.1 404" -i "$base/api/users/7"
check "form POST" "Thanks, Ada." -d "name=Ada" "$base/api/form"
check "form POST missing field" "HTTP/1.1 400" -i -d "x=1" "$base/api/form"
check "node CGI script" '"requestId":"smoke-1"' -H "X-Request-Id: smoke-1" "$base/api/time"
check "streaming" "data: tick 5" -N "$base/api/events"
check "local redirect" "Hello, redirect!" "$base/api/go?to=hello"
check "client redirect" "HTTP/1.1 307" -i "$base/api/go?to=docs"
check "compiled rust function" '"path":"/api/rust-hello"' "$base/api/rust-hello?x=1"
check "no route" "HTTP/1.1 404" -i "$base/api/missing"
check "json errors" '"status":404' -H "Accept: application/json" "$base/api/missing"
check "healthz" "ok" "$base/_watchdog/healthz"
check "routes endpoint" '"/api/users/[id]"' "$base/_watchdog/routes"

kill -TERM "$pid"
if wait "$pid"; then echo "ok   SIGTERM exits 0"; passes=$((passes + 1)); else echo "FAIL SIGTERM exit status $?"; failures=$((failures + 1)); fi
pid=""

# Started under nohup, hanging up does not stop it (SIGHUP otherwise drains).
: >"$log"
nohup "$bin" serve api --listen 127.0.0.1:0 >/dev/null 2>"$log" &
pid=$!
addr=$(listening_addr)
kill -HUP "$pid"
sleep 0.5
check "nohup keeps SIGHUP ignored" "ok" "http://$addr/_watchdog/healthz"
kill -TERM "$pid"
wait "$pid" || true
pid=""

echo "smoke: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
