#!/usr/bin/env python3
"""The table of scripts/bench.sh: watchdog beside the best peer host, the naive
tokio server and the raw spawn loop, from one run's raw results.

usage: bench_report.py PEERS_RAW SPAWN_SUMMARY_MD
"""
import re
import statistics
import sys
from collections import defaultdict

PEERS = ["lighttpd", "nginx-fcgiwrap", "apache-cgid", "busybox", "python-cgi"]
# Which spawn-loop row measures the same program a host runs.
SPAWN_ROW = {"hello-c": "hello-c-static-musl", "hello.sh": "hello.sh", "hello-c-glibc": "hello-c-static-glibc"}

runs = defaultdict(list)
header = []
for line in open(sys.argv[1]):
    if line.startswith("#"):
        header.append(line.strip("# \n"))
        continue
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    if "conc" in kv and "rps" in kv:
        runs[(kv["host"], kv["prog"], int(kv["conc"]))].append(kv)

spawn = {}
for line in open(sys.argv[2]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) >= 3 and cells[1] == "2":
        spawn[cells[0]] = float(cells[2].split()[0])


def median(kvs, key):
    return statistics.median(float(kv[key]) for kv in kvs)


def cpu_us(kvs):
    # cpu_busy% x 2 cores x run time / requests, as the harness reports it
    return statistics.median(float(kv["cpu_busy"]) / 100 * 2 * float(kv["duration_us"]) / float(kv["requests"]) for kv in kvs)


for note in header:
    print(f"> {note}  ")
print()
print("| program | conc | watchdog req/s | p50 ms | p99 ms | CPU us/req | best peer (req/s) | naive | spawn loop | wd/peer | wd/naive | wd/spawn |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
progs = sorted({p for (_, p, _) in runs}, key=lambda p: ["hello-c", "hello.sh", "echo-c"].index(p) if p in ["hello-c", "hello.sh", "echo-c"] else 9)
for prog in progs:
    for conc in sorted({c for (h, p, c) in runs if p == prog}):
        wd = runs.get(("watchdog", prog, conc))
        if not wd:
            continue
        rps = median(wd, "rps")
        peers = [(median(runs[(h, prog, conc)], "rps"), h) for h in PEERS if runs.get((h, prog, conc))]
        best = max(peers) if peers else None
        naive = runs.get(("tokio-naive", prog, conc))
        naive_rps = median(naive, "rps") if naive else None
        loop = spawn.get(SPAWN_ROW.get(prog, ""))
        ratio = lambda a, b: f"{a / b:.2f}" if b else "-"
        print(
            f"| {prog} | {conc} | {rps:.0f} | {median(wd, 'p50_us') / 1000:.2f} | {median(wd, 'p99_us') / 1000:.2f} | "
            f"{cpu_us(wd):.0f} | {f'{best[0]:.0f} ({best[1]})' if best else '-'} | {f'{naive_rps:.0f}' if naive_rps else '-'} | "
            f"{f'{loop:.0f}' if loop else '-'} | {ratio(rps, best[0] if best else 0)} | {ratio(rps, naive_rps or 0)} | "
            f"{ratio(rps, loop or 0)} |"
        )
print()
print("Spawn loop: ../shared/bench/spawnlimit, 2 spawners, same program (echo-c has no spawn-loop row).")
