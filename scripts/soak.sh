#!/usr/bin/env bash
# Soak test: thousands of mixed requests (normal functions and every kind of
# faulty one) against one server, 64 connections at once. It then checks that
# watchdog's open descriptors, child processes, zombies and memory came back to
# where they started and that every answer had the expected status.
#
# usage: scripts/soak.sh [--requests N] [--connections C] [--debug]
#   (defaults 20000, 64, the release build; --debug soaks the debug build, which
#   scripts/test.sh has just built, instead of compiling a release one)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
requests=20000
connections=64
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) requests=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --debug) profile=debug; shift ;;
    *) echo "usage: $0 [--requests N] [--connections C] [--debug]" >&2; exit 2 ;;
  esac
done
if ! command -v wrk >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi
if [ "$profile" = release ]; then cargo build --quiet --release; else cargo build --quiet; fi
bin="${CARGO_TARGET_DIR:-$root/target}/$profile/watchdog"
log=$(mktemp)
piddir=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  rm -rf "$log" "$piddir"
}
trap cleanup EXIT

RUST_LOG=warn,watchdog::commands=info,watchdog::server=info "$bin" serve fixtures --prefix /f --listen 127.0.0.1:0 \
  --timeout 5s --kill-grace 500ms --env "PID_DIR=$piddir" 2>"$log" &
pid=$!
addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$log" | head -n 1)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "soak: watchdog did not start"; cat "$log"; exit 1; }

fds() { ls "/proc/$pid/fd" | wc -l; }
children() { cat /proc/"$pid"/task/*/children 2>/dev/null | wc -w; }
zombies() { local n=0; for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
  if [ "$(awk '{print $3}' "/proc/$c/stat" 2>/dev/null)" = Z ]; then n=$((n + 1)); fi; done; echo "$n"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
settle() { for _ in $(seq 1 50); do [ "$(children)" -eq 0 ] && break; sleep 0.1; done; sleep 1; }

# Warm up so lazily created descriptors and buffers exist before the baseline.
wrk -t2 -c"$connections" -d2s -s scripts/soak.lua "http://$addr" >/dev/null
settle
fd0=$(fds); rss0=$(rss_kib)
echo "baseline: fds=$fd0 children=$(children) zombies=$(zombies) rss=${rss0}KiB"

# wrk runs for a duration; run rounds until enough requests were answered.
total=0; bad=0; errors=""
started=$(date +%s)
while [ "$total" -lt "$requests" ]; do
  out=$(wrk -t2 -c"$connections" -d10s --timeout 10s -s scripts/soak.lua "http://$addr")
  n=$(echo "$out" | awk '/^soak-responses/ {print $2}')
  u=$(echo "$out" | awk '/^soak-unexpected/ {print $2}')
  total=$((total + n)); bad=$((bad + u))
  e=$(echo "$out" | grep '^soak-errors' | sed 's/soak-errors //')
  errors="$errors [$e]"
  echo "$out" | grep '^soak-first-unexpected' || true
done
elapsed=$(( $(date +%s) - started ))
settle
fd1=$(fds); rss1=$(rss_kib); ch1=$(children); z1=$(zombies)
echo "after $total requests in ${elapsed}s: fds=$fd1 children=$ch1 zombies=$z1 rss=${rss1}KiB"
echo "unexpected statuses: $bad; wrk socket errors per round:$errors"

failed=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; failed=$((failed + 1)); fi; }
check "every answer had the expected status" "[ $bad -eq 0 ]"
check "at least $requests requests answered ($total)" "[ $total -ge $requests ]"
check "descriptors back to baseline ($fd0 -> $fd1)" "[ $fd1 -le $((fd0 + 4)) ]"
check "no child processes left ($ch1)" "[ $ch1 -eq 0 ]"
check "no zombies ($z1)" "[ $z1 -eq 0 ]"
check "RSS within 16 MiB of baseline (${rss0} -> ${rss1} KiB)" "[ $rss1 -le $((rss0 + 16384)) ]"
echo "soak: $((6 - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
