#!/usr/bin/env bash
# Benchmarks watchdog beside the CGI hosts of ../shared/bench in one run, on the
# same programs (static C binary, #!/bin/sh script, 1 MiB echo), plus the raw
# spawn loop (../shared/bench/spawnlimit) and the naive tokio server, and prints
# one table: req/s, p50, p99, CPU per request and the ratios watchdog / best peer,
# watchdog / naive server, watchdog / spawn loop.
#
# usage: scripts/bench.sh [--duration S] [--repeats N] [--conc "1 4 16 64 256"] [--programs "..."]
# Then throughput by concurrency with the concurrencies interleaved
# (scripts/bench-scaling.sh), the warm pool (scripts/bench-warm.sh) and memory and
# scale figures (scripts/bench_memory.py).
# Installs the peers (Debian packages) when they are missing. wrk shares the
# machine's cores with the server under test; the table says so.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench="$root/../shared/bench"
duration=10
repeats=2
conc="1 4 16 64 256"
programs="hello-c hello.sh echo-c"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --conc) conc=$2; shift 2 ;;
    --programs) programs=$2; shift 2 ;;
    *) sed -n '2,11p' "$0"; exit 2 ;;
  esac
done
[ -d "$bench/peers" ] || { echo "bench: ../shared/bench is missing (it sits beside the repository)"; exit 2; }
cd "$root"
cargo build --quiet --release
# Install the peers and tools first: without musl-gcc the static C program would
# be a glibc one, which starts several times slower on some VMs.
if ! { command -v lighttpd && command -v wrk && command -v fcgiwrap && command -v musl-gcc; } >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo "$bench/peers/install.sh" >/tmp/bench-install.log 2>&1 ||
    { echo "bench: installing the peer hosts failed (see /tmp/bench-install.log)"; exit 1; }
fi
tag="watchdog-$(date +%Y%m%dT%H%M%S)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
peers_raw="$bench/peers/results/raw-$tag.txt"
spawn_raw="$bench/peers/results/spawn-$tag.txt"
: >"$spawn_raw"
cc -O2 -pthread -o "$work/spawnbench" "$bench/spawnlimit/spawnbench.c"
cgi="$bench/peers/build/www/cgi-bin"

# Interleaved, because this kind of machine drifts (20% within minutes on a
# shared VM): every figure a ratio compares is measured next to the other, not
# minutes apart. For each repeat, program and concurrency, the peers, the naive
# server and watchdog run back to back (../shared/bench/peers/run.sh), and the
# raw spawn-and-wait loop (2 spawners) on the very file the hosts served. The
# HTTP ceiling runs beside the static C program, for the CPU a request costs
# beyond the spawn and HTTP. The report sets aside runs the hypervisor stole
# from (scripts/bench_report.py).

# The share of the machine's time the hypervisor stole since a snapshot, as the
# harness computes it for its own runs (steal over busy + idle), so the report
# can set aside the spawn loop's stolen runs by the same rule as the hosts'.
cpu_snapshot() { awk '/^cpu /{print $2+$3+$4+$7+$8+$5+$6, $9}' /proc/stat; }
steal_since() {
  echo "$1 $(cpu_snapshot)" | awk '{t=$3-$1; if (t<1) t=1; printf "%.1f", 100*($4-$2)/t}'
}

# One call of the harness for HOSTS, with watchdog after them when WITH_WATCHDOG
# is "watchdog".
harness() {
  local hosts=$1 with_watchdog=$2 target=()
  [ "$with_watchdog" = watchdog ] &&
    target=(--target watchdog "${CARGO_TARGET_DIR:-$root/target}/release/watchdog"' serve $CGI_DIR --listen 127.0.0.1:$PORT --prefix /' '/$PROG_NAME')
  "$bench/peers/run.sh" --hosts "$hosts" --programs "$prog" --conc "$c" --duration "$duration" \
    --repeats 1 --tag "$tag" "${target[@]}" >>/tmp/"$tag"-peers.txt 2>&1 ||
    echo "bench: run.sh failed for $prog at $c connections (see /tmp/$tag-peers.txt); going on" >&2
}

# The raw spawn-and-wait loop on the file the hosts serve.
spawn_loop() {
  case "$prog" in
    hello-c | hello.sh | hello-c-glibc)
      local before line
      before=$(cpu_snapshot)
      line=$("$work/spawnbench" posix_spawn 2 "$duration" "$cgi/$prog") || line="FAILED"
      echo "prog=$prog conc=$c rep=$rep $line steal=$(steal_since "$before")" >>"$spawn_raw"
      # Beside one connection, one spawner too: its p50 is how long a bare spawn
      # and wait of this file takes here, the floor of any host's latency.
      if [ "$c" -eq 1 ]; then
        before=$(cpu_snapshot)
        line=$("$work/spawnbench" posix_spawn 1 "$duration" "$cgi/$prog") || line="FAILED"
        echo "prog=$prog conc=$c rep=$rep $line steal=$(steal_since "$before")" >>"$spawn_raw"
      fi ;;
  esac
}

# Odd repeats run the peers, then watchdog, then the loop; even ones the other
# way round, so that whatever a run leaves behind on the machine (or a drift
# within the minute) does not always fall on the same side of a ratio.
for rep in $(seq 1 "$repeats"); do
  for prog in $programs; do
    hosts="lighttpd nginx-fcgiwrap tokio-naive"
    [ "$prog" = hello-c ] && hosts="ceiling $hosts"
    for c in $conc; do
      echo "bench: repeat $rep/$repeats, $prog at $c connections" >&2
      if [ $((rep % 2)) -eq 1 ]; then
        harness "$hosts" watchdog
        spawn_loop
      else
        spawn_loop
        harness "" watchdog
        harness "$(echo $hosts | tr ' ' '\n' | tac | tr '\n' ' ')" none
      fi
    done
  done
done

# A copy under target/ too: ../shared/bench may be reset between sessions, and the
# table can be made again from these two files (scripts/bench_report.py RAW SPAWN).
kept="${CARGO_TARGET_DIR:-$root/target}/bench"
mkdir -p "$kept"
cp "$peers_raw" "$spawn_raw" "$kept/"
echo "bench: raw results in $peers_raw and $spawn_raw (copies in $kept)" >&2
python3 "$root/scripts/bench_report.py" "$peers_raw" "$spawn_raw"

# Throughput and tails as the load grows, the concurrencies interleaved (the
# table's cells are minutes apart); then the warm pool (the same worker direct and
# through watchdog) and the memory and scale figures, on the same build.
echo
echo "### Scaling (static C, concurrencies interleaved)"
echo
"$root/scripts/bench-scaling.sh" --duration "$((duration < 5 ? duration : 5))" ||
  echo "bench: the scaling runs failed; going on" >&2
echo
echo "### Warm pool"
echo
"$root/scripts/bench-warm.sh" --duration "$((duration < 5 ? duration : 5))"
echo
echo "### Memory and scale"
echo
python3 "$root/scripts/bench_memory.py" "${CARGO_TARGET_DIR:-$root/target}/release/watchdog"
