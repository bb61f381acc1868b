#!/usr/bin/env bash
# No collapse under load: one watchdog serving the static C program, hit at each
# concurrency in turn, round after round, so that the figures a ratio compares are
# taken seconds apart. In scripts/bench.sh's table each concurrency is a cell of
# its own, minutes from the others, and this VM's speed moves by 15-30% over such
# a span (the spawn loop beside the cells says by how much), so "throughput at 64
# connections against the peak" read from that table compares two machines.
#
# Prints, per concurrency, the median req/s, p50 and p99 of its rounds (and the
# req/s range), then each median against the highest one.
#
# usage: scripts/bench-scaling.sh [--duration S] [--conc "4 16 64 256"] [--rounds N] [--program FILE]
# FILE defaults to the harness's static C program (../shared/bench/peers/build,
# made by its run.sh, which scripts/bench.sh calls first).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=5
conc="4 16 64 256"
rounds=3
program="$root/../shared/bench/peers/build/www/cgi-bin/hello-c"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --conc) conc=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --program) program=$2; shift 2 ;;
    *) sed -n '12,14p' "$0" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "bench-scaling: needs wrk (apt-get install wrk)" >&2; exit 2; }
[ -x "$program" ] || {
  echo "bench-scaling: $program is missing or not executable: run scripts/bench.sh (its harness builds it) or pass --program" >&2
  exit 2
}
cargo build --quiet --release
bin="${CARGO_TARGET_DIR:-$root/target}/release/watchdog"
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/api"
cp "$program" "$work/api/"
name=$(basename "$program")
# The default log level, as in the table: the access log line is part of the cost.
"$bin" serve "$work/api" --listen 127.0.0.1:0 --prefix / >/dev/null 2>"$work/log" &
server=$!
addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$work/log" | head -n 1)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "bench-scaling: watchdog did not start; its log:" >&2; cat "$work/log" >&2; exit 1; }
url="http://$addr/$name"
curl -fsS -o /dev/null "$url" || { echo "bench-scaling: $url does not answer 200" >&2; exit 1; }

# One wrk run: "req/s p50_ms p99_ms", after a second of warm-up at the same
# concurrency (new connections, the server's buffers grown).
measure() { # conc
  local threads=2
  [ "$1" -eq 1 ] && threads=1
  wrk -t"$threads" -c"$1" -d1s "$url" >/dev/null 2>&1 || true
  wrk -t"$threads" -c"$1" -d"${duration}s" --latency "$url" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^Requests\/sec/ {r=$2} $1 == "50%" {p50=ms($2)} $1 == "99%" {p99=ms($2)}
    /Non-2xx|Socket errors/ {bad=1}
    END {if (bad) r = r "!"; print r, p50, p99}'
}

# Rounds alternate the order (ascending, then descending), so no concurrency
# always follows the heaviest one.
list=($conc)
for round in $(seq 1 "$rounds"); do
  order=("${list[@]}")
  if [ $((round % 2)) -eq 0 ]; then
    order=()
    for ((i = ${#list[@]} - 1; i >= 0; i--)); do order+=("${list[$i]}"); done
  fi
  for c in "${order[@]}"; do
    echo "bench-scaling: round $round/$rounds, $c connections" >&2
    echo "$c $(measure "$c")" >>"$work/runs"
  done
done

echo "machine: $(nproc) cores, $(uname -r); wrk shares the cores with watchdog; $name;"
echo "${duration}s runs; each concurrency's median of $rounds rounds, the rounds alternating the order"
python3 - "$work/runs" "$conc" <<'EOF'
import statistics, sys

runs = {}
for line in open(sys.argv[1]):
    c, rps, p50, p99 = line.split()
    if rps.endswith("!"):
        print(f"warning: a run at {c} connections had errors or non-2xx answers")
        rps = rps[:-1]
    runs.setdefault(int(c), []).append((float(rps), float(p50), float(p99)))

def median_run(rows):
    # The run with the median req/s (the lower one of an even count), so its
    # latencies belong to it.
    return sorted(rows)[(len(rows) - 1) // 2]

medians = {c: median_run(rows) for c, rows in runs.items()}
peak = max(m[0] for m in medians.values())
print("| conc | req/s (median) | rounds' range | p50 ms | p99 ms | vs peak |")
print("|---|---|---|---|---|---|")
for c in [int(c) for c in sys.argv[2].split()]:
    rps, p50, p99 = medians[c]
    low, high = min(r[0] for r in runs[c]), max(r[0] for r in runs[c])
    print(f"| {c} | {rps:.0f} | {low:.0f}-{high:.0f} | {p50:.2f} | {p99:.2f} | {rps / peak:.2f} |")
EOF
