#!/usr/bin/env bash
# Cold vs warm: the same trivial Python function run as CGI (a process per
# request) and as a warm HTTP worker through watchdog, plus the worker hit
# directly; and the same trivial Node function as a CGI script and as a warm
# handler module. wrk on loopback shares the machine's cores with the servers.
#
# The worker through watchdog and the worker hit directly alternate over several
# rounds (the order swapped every other round) and the table gives their medians
# and the ratio of the medians: on a shared VM one pair of runs minutes apart can
# differ by more than the proxy costs. When nginx is installed, the worker hit
# directly is also measured through it, with the headers watchdog adds, between
# the two: what a reverse proxy costs this worker on this machine.
#
# usage: scripts/bench-warm.sh [--duration S] [--conc "1 16"] [--rounds N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=5
conc="1 16"
rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --conc) conc=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "usage: $0 [--duration S] [--conc LIST] [--rounds N]" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "bench-warm: needs wrk (apt-get install wrk)"; exit 2; }
command -v curl >/dev/null || { echo "bench-warm: needs curl (apt-get install curl)"; exit 2; }
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
# The pool a user gets by default (`max` 4), all started before the first
# measurement. Each worker takes one request at a time, while the worker hit
# directly serves every connection at once on its threads: a pool held to 2
# workers waits on their round trips at 16 connections (0.70-0.80 of direct in
# alternating rounds, against 0.91-0.97 with 4), which measures the pool's
# size, not the proxy.
printf '[functions."hello.py"]\nwarm = { protocol = "http", min = 4, max = 4 }\n' > "$work/warm/watchdog.toml"

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

# nginx (the peers' install puts it here) as the same kind of proxy in front of the
# worker hit directly, passing the headers watchdog adds to a warm request
# (README, "Keep-warm pool") and logging each request to a file as watchdog does:
# what any reverse proxy costs this worker, beside what watchdog costs it. Python's
# http.server parses each header line slowly; those six headers are part of both.
nginx_url=""
if command -v nginx >/dev/null; then
  nginx_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$work/nginx/logs"
  cat >"$work/nginx/nginx.conf" <<CONF
worker_processes $(nproc);
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 1024; }
http {
  access_log $work/nginx/logs/access.log;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream worker { server 127.0.0.1:$port; keepalive 16; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://worker;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Request-Id \$request_id;
      # A value of the same length as watchdog's (nginx has no deadline).
      proxy_set_header X-Watchdog-Deadline-Ms \$msec;
      add_header X-Request-Id \$request_id;
    }
  }
}
CONF
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" >"$work/nginx/logs/stderr.log" 2>&1 &
  pids+=($!)
  nginx_url="http://127.0.0.1:$nginx_port/api/hello"
fi
sleep 1
if [ -n "$nginx_url" ] && ! curl -sf -o /dev/null "$nginx_url"; then
  # Printed here: the work folder goes when the script ends.
  echo "bench-warm: nginx did not come up in front of the worker; its row is left out. What it said:" >&2
  tail -n 5 "$work/nginx/logs/stderr.log" "$work/nginx/logs/error.log" >&2 2>/dev/null || true
  nginx_url=""
fi

# wrk with one thread at one connection (a second thread would have none), else two.
load() { # url conc [wrk flags...]
  local url=$1 conc=$2 threads=2
  shift 2
  [ "$conc" -eq 1 ] && threads=1
  wrk -t"$threads" -c"$conc" -d"${duration}s" "$@" "$url"
}
# One wrk run: prints "req/s p50 p99".
# When a wrk run ends it drops the requests it has in flight, and watchdog stops
# a warm worker whose client left before its answer (CONTRACT §3's kill rule,
# applied per request by §4): up to one worker per connection is replaced, on
# demand, during the next run, which then measures Node or Python starting
# (run T: p99 51 ms through the pool at 16 connections, 3.5 ms in run S). So
# before each measured run, requests that all complete bring the pool back to
# its size: `top_up` sends a few waves of four at once with curl.
top_up() { # url
  local wave
  for _ in 1 2 3; do
    wave=()
    for _ in 1 2 3 4; do
      curl -s -o /dev/null "$1" &
      wave+=($!)
    done
    wait "${wave[@]}"
  done
}
measure() { # url conc
  top_up "$1"
  load "$1" "$2" --latency |
    awk '/^Requests\/sec/ {r=$2} $1 == "50%" {p50=$2} $1 == "99%" {p99=$2} END {print r, p50, p99}'
}
warm_up() { # url conc
  load "$1" "$2" >/dev/null 2>&1 || true
}
row() { # label conc "req/s p50 p99"
  set -- "$1" "$2" $3
  printf '| %-37s | %4s | %10s | %9s | %9s |\n' "$1" "$2" "$3" "$4" "$5"
}
run() { # label url conc
  warm_up "$2" "$3"
  row "$1" "$3" "$(measure "$2" "$3")"
}
# The median run of several "req/s p50 p99" lines (by req/s), with the range.
median_of() {
  sort -g | awk '{l[NR]=$0; r[NR]=$1} END {m=int((NR+1)/2); split(l[m], f, " ");
    printf "%s %s %s %s..%s\n", f[1], f[2], f[3], r[1], r[NR]}'
}

echo "machine: $(nproc) cores, $(uname -r); wrk shares the cores with the servers; ${duration}s runs;"
echo "via watchdog and direct: median of $rounds alternating rounds (req/s range after the ratio)"
printf '| %-37s | %4s | %10s | %9s | %9s |\n' "function" "conc" "req/s" "p50" "p99"
printf '|%s|%s|%s|%s|%s|\n' "---------------------------------------" "------" "------------" "-----------" "-----------"
ratios=()
for c in $conc; do
  run "python, CGI (cold every request)" "http://$cold/api/hello" "$c"
  via_url="http://$warm/api/hello"
  direct_url="http://127.0.0.1:$port/api/hello"
  warm_up "$via_url" "$c"
  warm_up "$direct_url" "$c"
  [ -n "$nginx_url" ] && warm_up "$nginx_url" "$c"
  : >"$work/via"
  : >"$work/direct"
  : >"$work/nginx-runs"
  for round in $(seq 1 "$rounds"); do
    # watchdog and the worker hit directly swap places every other round;
    # nginx runs between them.
    if [ $((round % 2)) -eq 1 ]; then
      measure "$via_url" "$c" >>"$work/via"
      [ -n "$nginx_url" ] && measure "$nginx_url" "$c" >>"$work/nginx-runs"
      measure "$direct_url" "$c" >>"$work/direct"
    else
      measure "$direct_url" "$c" >>"$work/direct"
      [ -n "$nginx_url" ] && measure "$nginx_url" "$c" >>"$work/nginx-runs"
      measure "$via_url" "$c" >>"$work/via"
    fi
  done
  read -r via_rps via_p50 via_p99 via_range < <(median_of <"$work/via")
  read -r direct_rps direct_p50 direct_p99 direct_range < <(median_of <"$work/direct")
  row "python, warm pool (4) via watchdog" "$c" "$via_rps $via_p50 $via_p99"
  row "python worker hit directly (1 process)" "$c" "$direct_rps $direct_p50 $direct_p99"
  unit=connections; [ "$c" -eq 1 ] && unit=connection
  ratio="at $c $unit: $(awk -v a="$via_rps" -v b="$direct_rps" 'BEGIN {printf "%.2f", a/b}') (via $via_range, direct $direct_range req/s)"
  if [ -n "$nginx_url" ]; then
    read -r nginx_rps nginx_p50 nginx_p99 nginx_range < <(median_of <"$work/nginx-runs")
    row "that worker via nginx (same headers)" "$c" "$nginx_rps $nginx_p50 $nginx_p99"
    ratio="$ratio; nginx / direct $(awk -v a="$nginx_rps" -v b="$direct_rps" 'BEGIN {printf "%.2f", a/b}') ($nginx_range req/s)"
  fi
  ratios+=("$ratio")
  run "node, CGI script (cold every request)" "http://$node/api/cgi" "$c"
  run "node, handler module (warm)" "http://$node/api/module" "$c"
done
echo
echo "At 1 connection one worker serves either way: the ratio is what the proxy costs."
echo "At 16, four one-request workers through watchdog against one threaded process."
echo "nginx stands in front of the process hit directly, adding the headers watchdog adds."
for ratio in "${ratios[@]}"; do echo "warm worker via watchdog / direct, $ratio"; done
