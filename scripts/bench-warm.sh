#!/usr/bin/env bash
# Cold vs warm: the same trivial Python function run as CGI (a process per
# request) and as a warm HTTP worker through watchdog, plus the worker hit
# directly; and the same trivial Node function as a CGI script and as a warm
# handler module. wrk on loopback shares the machine's cores with the servers.
#
# usage: scripts/bench-warm.sh [--duration S] [--conc "1 16"]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=5
conc="1 16"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --conc) conc=$2; shift 2 ;;
    *) echo "usage: $0 [--duration S] [--conc LIST]" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "bench-warm: needs wrk (apt-get install wrk)"; exit 2; }
cargo build --quiet --release
bin="${CARGO_TARGET_DIR:-$root/target}/release/watchdog"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

for mode in cold warm; do
  mkdir -p "$work/$mode/api"
  cp scripts/bench-warm/hello.py "$work/$mode/api/hello.py"
done
mkdir -p "$work/node/api"
cp scripts/bench-warm/hello-cgi.js "$work/node/api/cgi.js"
cp scripts/bench-warm/hello-module.mjs "$work/node/api/module.mjs"
chmod 755 "$work/node/api/cgi.js"; chmod 644 "$work/node/api/module.mjs"
printf '[functions."hello.py"]\nwarm = { protocol = "http", min = 2, max = 2 }\n' > "$work/warm/watchdog.toml"

addr=""
start() { # mode: sets $addr
  local log="$work/$1.log"
  "$bin" serve "$work/$1/api" --listen 127.0.0.1:0 >/dev/null 2>"$log" &
  pids+=($!)
  addr=""
  for _ in $(seq 1 100); do
    addr=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$addr" ] && return
    sleep 0.1
  done
  echo "bench-warm: watchdog did not start" >&2; exit 1
}
start cold; cold=$addr
start warm; warm=$addr
start node; node=$addr
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT=$port python3 scripts/bench-warm/hello.py >/dev/null 2>&1 &
pids+=($!)
sleep 1

run() { # label url conc
  local threads=2; [ "$3" -eq 1 ] && threads=1
  wrk -t"$threads" -c"$3" -d"${duration}s" --latency "$2" >/dev/null 2>&1 || true # warm-up
  local out; out=$(wrk -t"$threads" -c"$3" -d"${duration}s" --latency "$2")
  local rps p50 p99
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  printf '| %-34s | %4s | %10s | %9s | %9s |\n' "$1" "$3" "$rps" "$p50" "$p99"
}

echo "machine: $(nproc) cores, $(uname -r); wrk shares the cores with the servers; ${duration}s runs"
printf '| %-34s | %4s | %10s | %9s | %9s |\n' "function" "conc" "req/s" "p50" "p99"
printf '|%s|%s|%s|%s|%s|\n' "------------------------------------" "------" "------------" "-----------" "-----------"
for c in $conc; do
  run "python, CGI (cold every request)" "http://$cold/api/hello" "$c"
  run "python, warm http worker via watchdog" "http://$warm/api/hello" "$c"
  run "python http worker hit directly" "http://127.0.0.1:$port/api/hello" "$c"
  run "node, CGI script (cold every request)" "http://$node/api/cgi" "$c"
  run "node, handler module (warm)" "http://$node/api/module" "$c"
done
