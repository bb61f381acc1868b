#!/usr/bin/env python3
"""The table of scripts/bench.sh: watchdog beside the best peer host, the naive
tokio server and the raw spawn loop, from one interleaved run's raw results.

usage: bench_report.py PEERS_RAW SPAWN_RAW

PEERS_RAW holds ../shared/bench/peers/run.sh lines (any number of calls with one
tag); SPAWN_RAW holds spawnbench lines prefixed with the program and the
concurrency they were measured next to. Every figure is the median of its runs.

A run during which the hypervisor stole more than STEAL_LIMIT percent of the
machine's time (the harness's `steal` column; bench.sh adds it to the spawn
loop's lines) is set aside, for every host alike: on a shared VM one such
repeat measured lighttpd, the naive server and watchdog at a third to a half of
their speed a minute later. A figure with no run left keeps its stolen ones,
marked.
"""
import re
import statistics
import sys
from collections import defaultdict

PEERS = ["lighttpd", "nginx-fcgiwrap", "apache-cgid", "busybox", "python-cgi"]
ORDER = ["hello-c", "hello.sh", "echo-c"]
STEAL_LIMIT = 5.0


def fields(line):
    return dict(re.findall(r"(\w+)=(\S+)", line))


runs = defaultdict(list)
# Runs set aside for steal, by the same keys: a fallback when no other run is left.
stolen = defaultdict(list)
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
        (stolen if float(kv.get("steal", 0)) > STEAL_LIMIT else runs)[key].append(kv)
    else:
        failed[key] += 1

spawn = defaultdict(list)
spawn_stolen = defaultdict(list)
# The one-spawner loop run beside one connection: a bare spawn's latency.
single = defaultdict(list)
single_stolen = defaultdict(list)
for line in open(sys.argv[2]):
    kv = fields(line)
    if "spawns_per_s" in kv:
        key = (kv["prog"], int(kv["conc"]))
        clean, aside = (single, single_stolen) if kv.get("spawners") == "1" else (spawn, spawn_stolen)
        (aside if float(kv.get("steal", 0)) > STEAL_LIMIT else clean)[key].append(kv)


fallbacks = 0


def measured(clean, aside, key):
    """The clean runs of `key`, else (marked) the stolen ones."""
    global fallbacks
    if clean.get(key):
        return clean[key], ""
    if aside.get(key):
        fallbacks += 1
        return aside[key], "*"
    return None, ""


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
      "run back to back, and the spawn loop on the same file; odd repeats in that order, even ones in reverse  ")
print()
all_runs = sum(len(v) for v in runs.values()) + sum(len(v) for v in spawn.values())
set_aside = sum(len(v) for v in stolen.values()) + sum(len(v) for v in spawn_stolen.values())
print(f"> set aside for steal: {set_aside} of {all_runs + set_aside} runs had more than {STEAL_LIMIT:.0f}% "
      "of the machine's time stolen by the hypervisor  ")
print()
print("| program | conc | watchdog req/s | p50 ms | p99 ms | CPU us/req | beyond us | naive beyond | best peer (req/s) | naive | spawn loop | wd/peer | wd/naive | wd/spawn | runs | stolen |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
keys = set(runs) | set(stolen)
progs = sorted({p for (_, p, _) in keys}, key=lambda p: (ORDER.index(p) if p in ORDER else len(ORDER), p))
for prog in progs:
    for conc in sorted({c for (h, p, c) in keys if p == prog}):
        wd, wd_mark = measured(runs, stolen, ("watchdog", prog, conc))
        if not wd:
            continue
        rps = median(wd, "rps")
        peers = []
        for h in PEERS:
            peer, mark = measured(runs, stolen, (h, prog, conc))
            if peer:
                peers.append((median(peer, "rps"), h + mark))
        best = max(peers) if peers else None
        naive, naive_mark = measured(runs, stolen, ("tokio-naive", prog, conc))
        naive_rps = median(naive, "rps") if naive else None
        loop, loop_mark = measured(spawn, spawn_stolen, (prog, conc))
        loop_rps = median(loop, "spawns_per_s") if loop else None
        ceiling, _ = measured(runs, stolen, ("ceiling", "hello", conc))
        row_stolen = sum(len(stolen.get((h, prog, conc), [])) for h in ["watchdog", *PEERS, "tokio-naive"])
        row_stolen += len(spawn_stolen.get((prog, conc), []))
        if prog == "hello-c":
            row_stolen += len(stolen.get(("ceiling", "hello", conc), []))
        beyond = naive_beyond = "-"
        if loop and ceiling:
            spawn_and_http = median(loop, "cpu_us_per_spawn") + cpu_us(ceiling)
            beyond = f"{cpu_us(wd) - spawn_and_http:.0f}"
            if naive:
                naive_beyond = f"{cpu_us(naive) - spawn_and_http:.0f}"
        # How many repeats each figure stands on: watchdog, and any host that lost one.
        count = f"{len(wd)}"
        lost = [f"{h} {failed[(h, prog, conc)]} failed" for h in ["watchdog", *PEERS, "tokio-naive"] if failed.get((h, prog, conc))]
        if lost:
            count += " (" + ", ".join(lost) + ")"
        print(
            f"| {prog} | {conc} | {rps:.0f}{wd_mark} | {median(wd, 'p50_us') / 1000:.2f} | {median(wd, 'p99_us') / 1000:.2f} | "
            f"{cpu_us(wd):.0f} | {beyond} | {naive_beyond} | {f'{best[0]:.0f} ({best[1]})' if best else '-'} | "
            f"{f'{naive_rps:.0f}{naive_mark}' if naive_rps else '-'} | {f'{loop_rps:.0f}{loop_mark}' if loop_rps else '-'} | "
            f"{ratio(rps, best[0] if best else 0)} | {ratio(rps, naive_rps)} | {ratio(rps, loop_rps)} | {count} | {row_stolen} |"
        )
print()
print("Spawn loop: ../shared/bench/spawnlimit's spawnbench, posix_spawn and wait, 2 spawners, on the file the")
print("hosts served (echo-c has no spawn-loop row). Beyond: watchdog's CPU per request minus the loop's CPU per")
print("spawn and the HTTP ceiling's CPU per request at the same concurrency (measured beside static C); the loop")
print("always runs 2 spawners, so at 1 and 4 connections it also holds the cost of a half-idle machine (the target")
print("is at 16). Naive beyond: the same for the naive server, measured beside watchdog. Runs: watchdog's runs")
print(f"the row stands on; stolen: runs of any host or the loop in this row set aside for more than {STEAL_LIMIT:.0f}% steal.")
floors = []
for prog in progs:
    wd, _ = measured(runs, stolen, ("watchdog", prog, 1))
    loop, mark = measured(single, single_stolen, (prog, 1))
    if wd and loop:
        ceiling, _ = measured(runs, stolen, ("ceiling", "hello", 1))
        http = f", the HTTP ceiling's {median(ceiling, 'p50_us') / 1000:.2f} ms" if ceiling and prog == "hello-c" else ""
        floors.append(
            f"{prog}: watchdog {median(wd, 'p50_us') / 1000:.2f} ms, a bare posix_spawn + wait "
            f"{median(loop, 'p50_us') / 1000:.2f}{mark} ms{http}"
        )
if floors:
    print()
    print("p50 at 1 connection beside the floor (the spawn loop with one spawner, no HTTP, run next to it): "
          + "; ".join(floors) + ".")
if fallbacks:
    print(f"* every run of this figure had more than {STEAL_LIMIT:.0f}% steal; the median of those stands in.")
if bad_checks:
    print()
    print("WRONG ANSWERS (check not ok, their runs still counted above): "
          + ", ".join(f"{h} / {p}" for h, p in sorted(bad_checks)))
