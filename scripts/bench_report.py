#!/usr/bin/env python3
"""The table of scripts/bench.sh: watchdog beside the best peer host, the naive
tokio server and the raw spawn loop, from one interleaved run's raw results.

usage: bench_report.py PEERS_RAW SPAWN_RAW

PEERS_RAW holds ../shared/bench/peers/run.sh lines (any number of calls with one
tag); SPAWN_RAW holds spawnbench lines prefixed with the program and the
concurrency they were measured next to. Every figure is the median of its runs.
"""
import re
import statistics
import sys
from collections import defaultdict

PEERS = ["lighttpd", "nginx-fcgiwrap", "apache-cgid", "busybox", "python-cgi"]
ORDER = ["hello-c", "hello.sh", "echo-c"]


def fields(line):
    return dict(re.findall(r"(\w+)=(\S+)", line))


runs = defaultdict(list)
notes = []
for line in open(sys.argv[1]):
    if line.startswith("#"):
        note = line.strip("# \n")
        # run.sh repeats its header on every call; the machine and the target
        # command are the same each time.
        if note.startswith(("machine", "target")) and note not in notes:
            notes.append(note)
        continue
    kv = fields(line)
    if "conc" in kv and "rps" in kv:
        runs[(kv["host"], kv["prog"], int(kv["conc"]))].append(kv)

spawn = defaultdict(list)
for line in open(sys.argv[2]):
    kv = fields(line)
    if "spawns_per_s" in kv:
        spawn[(kv["prog"], int(kv["conc"]))].append(kv)


def median(kvs, key):
    return statistics.median(float(kv[key]) for kv in kvs)


def cpu_us(kvs):
    # cpu_busy% x 2 cores x run time / requests, as the harness reports it
    return statistics.median(
        float(kv["cpu_busy"]) / 100 * 2 * float(kv["duration_us"]) / float(kv["requests"]) for kv in kvs
    )


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"


for note in notes:
    print(f"> {note}  ")
print("> interleaved: for each repeat, program and concurrency the peers, the naive server and watchdog "
      "run back to back, then the spawn loop on the same file  ")
print()
print("| program | conc | watchdog req/s | p50 ms | p99 ms | CPU us/req | beyond us | best peer (req/s) | naive | spawn loop | wd/peer | wd/naive | wd/spawn |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
progs = sorted({p for (_, p, _) in runs if p in ORDER}, key=ORDER.index)
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
        loop = spawn.get((prog, conc))
        loop_rps = median(loop, "spawns_per_s") if loop else None
        ceiling = runs.get(("ceiling", "hello", conc))
        beyond = "-"
        if loop and ceiling:
            beyond = f"{cpu_us(wd) - median(loop, 'cpu_us_per_spawn') - cpu_us(ceiling):.0f}"
        print(
            f"| {prog} | {conc} | {rps:.0f} | {median(wd, 'p50_us') / 1000:.2f} | {median(wd, 'p99_us') / 1000:.2f} | "
            f"{cpu_us(wd):.0f} | {beyond} | {f'{best[0]:.0f} ({best[1]})' if best else '-'} | "
            f"{f'{naive_rps:.0f}' if naive_rps else '-'} | {f'{loop_rps:.0f}' if loop_rps else '-'} | "
            f"{ratio(rps, best[0] if best else 0)} | {ratio(rps, naive_rps)} | {ratio(rps, loop_rps)} |"
        )
print()
print("Spawn loop: ../shared/bench/spawnlimit's spawnbench, posix_spawn and wait, 2 spawners, on the file the")
print("hosts served (echo-c has no spawn-loop row). Beyond: watchdog's CPU per request minus the loop's CPU per")
print("spawn and the HTTP ceiling's CPU per request at the same concurrency; the loop always runs 2 spawners, so")
print("at 1 and 4 connections it also holds the cost of a half-idle machine (the target is at 16).")
