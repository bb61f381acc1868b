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
failed = defaultdict(int)
bad_checks = set()
notes = []
setup = None
cores = 2
for line in open(sys.argv[1]):
    if line.startswith("#"):
        note = line.strip("# \n")
        # run.sh repeats its header on every call; the machine and the target
        # command are the same each time, and the libc of hello-c and the network
        # namespace too (taken from the first call).
        if note.startswith("machine: "):
            match = re.match(r"machine: (\d+) cores", note)
            cores = int(match.group(1)) if match else cores
        if note.startswith(("machine", "target")) and note not in notes:
            notes.append(note)
        if note.startswith("run ") and setup is None:
            kv = dict(re.findall(r"([\w-]+)=(\S+)", note))
            setup = f"hello-c built with {kv.get('hello-c', '?')}, network namespace: {kv.get('netns', '?')}"
        continue
    kv = fields(line)
    if "check" in kv and not kv["check"].startswith("ok"):
        bad_checks.add((kv["host"], kv["prog"]))
    if "conc" not in kv:
        continue
    key = (kv["host"], kv["prog"], int(kv["conc"]))
    if "rps" in kv and float(kv.get("requests", 0)) > 0:
        runs[key].append(kv)
    else:
        failed[key] += 1

spawn = defaultdict(list)
for line in open(sys.argv[2]):
    kv = fields(line)
    if "spawns_per_s" in kv:
        spawn[(kv["prog"], int(kv["conc"]))].append(kv)


def median(kvs, key):
    return statistics.median(float(kv[key]) for kv in kvs)


def cpu_us(kvs):
    # cpu_busy% x cores x run time / requests, as the harness reports it
    return statistics.median(
        float(kv["cpu_busy"]) / 100 * cores * float(kv["duration_us"]) / float(kv["requests"]) for kv in kvs
    )


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"


for note in notes:
    print(f"> {note}  ")
if setup:
    print(f"> {setup}  ")
print("> interleaved: for each repeat, program and concurrency the peers, the naive server and watchdog "
      "run back to back, then the spawn loop on the same file  ")
print()
print("| program | conc | watchdog req/s | p50 ms | p99 ms | CPU us/req | beyond us | best peer (req/s) | naive | spawn loop | wd/peer | wd/naive | wd/spawn | runs |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
progs = sorted({p for (_, p, _) in runs}, key=lambda p: (ORDER.index(p) if p in ORDER else len(ORDER), p))
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
        # How many repeats each figure stands on: watchdog, and any host that lost one.
        count = f"{len(wd)}"
        lost = [f"{h} {failed[(h, prog, conc)]} failed" for h in ["watchdog", *PEERS, "tokio-naive"] if failed.get((h, prog, conc))]
        if lost:
            count += " (" + ", ".join(lost) + ")"
        print(
            f"| {prog} | {conc} | {rps:.0f} | {median(wd, 'p50_us') / 1000:.2f} | {median(wd, 'p99_us') / 1000:.2f} | "
            f"{cpu_us(wd):.0f} | {beyond} | {f'{best[0]:.0f} ({best[1]})' if best else '-'} | "
            f"{f'{naive_rps:.0f}' if naive_rps else '-'} | {f'{loop_rps:.0f}' if loop_rps else '-'} | "
            f"{ratio(rps, best[0] if best else 0)} | {ratio(rps, naive_rps)} | {ratio(rps, loop_rps)} | {count} |"
        )
print()
print("Spawn loop: ../shared/bench/spawnlimit's spawnbench, posix_spawn and wait, 2 spawners, on the file the")
print("hosts served (echo-c has no spawn-loop row). Beyond: watchdog's CPU per request minus the loop's CPU per")
print("spawn and the HTTP ceiling's CPU per request at the same concurrency (measured beside static C); the loop")
print("always runs 2 spawners, so at 1 and 4 connections it also holds the cost of a half-idle machine (the target")
print("is at 16).")
if bad_checks:
    print()
    print("WRONG ANSWERS (check not ok, their runs still counted above): "
          + ", ".join(f"{h} / {p}" for h, p in sorted(bad_checks)))
