#!/usr/bin/env python3
"""Memory and scale figures for watchdog (issue 7), one table.

usage: scripts/bench_memory.py WATCHDOG_BINARY

- idle RSS after start-up;
- peak RSS growth while 1 GiB is uploaded through a function (stdin, streamed
  with Content-Length) and while 1 GiB is downloaded from one (stdout);
- peak RSS with 1,000 concurrent invocations of a function that sleeps;
- a 10,000-function tree: time from exec to the first 200 from /_watchdog/readyz,
  and routing throughput (requests answered by the route table, no spawn) beside a
  10-function tree.

Every server runs on 127.0.0.1 with an ephemeral port and is stopped by PID.
"""
import http.client
import os
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import threading
import time

GIB = 1 << 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, binary, root, *flags):
        self.port = free_port()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [binary, "serve", root, "--listen", f"127.0.0.1:{self.port}", "--prefix", "/", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "warn"})
        self.ready_after = self.wait_ready()

    def wait_ready(self):
        while time.monotonic() - self.started < 30:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/_watchdog/readyz")
                if c.getresponse().status == 200:
                    return time.monotonic() - self.started
            except OSError:
                time.sleep(0.002)
        raise SystemExit("server did not become ready")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def script(root, name, body):
    path = os.path.join(root, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)


def upload(port, size):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.putrequest("POST", "/sink")
    c.putheader("Content-Length", str(size))
    c.endheaders()
    chunk = b"\0" * (1 << 20)
    for _ in range(size // len(chunk)):
        c.send(chunk)
    r = c.getresponse()
    r.read()
    return r.status


def download(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("GET", "/source")
    r = c.getresponse()
    total = 0
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        total += len(b)
    return r.status, total


def sample_peak(pid, stop, out):
    peak = 0
    while not stop.is_set():
        peak = max(peak, rss_kib(pid))
        time.sleep(0.01)
    out.append(peak)


def with_peak(pid, action):
    stop, out = threading.Event(), []
    t = threading.Thread(target=sample_peak, args=(pid, stop, out))
    t.start()
    result = action()
    stop.set()
    t.join()
    return result, out[0]


def sleepers(port, n):
    statuses = []
    lock = threading.Lock()

    def one():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("GET", "/sleep")
            r = c.getresponse()
            r.read()
            status = r.status
        except OSError as e:
            status = str(e)
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(1 for s in statuses if s == 200)


def wrk_rps(port, path, seconds=5):
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    return 0.0


def tree(root, n):
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        d = os.path.join(root, f"group{i // 100}")
        os.makedirs(d, exist_ok=True)
        script(d, f"fn{i}.sh", "printf 'Content-Type: text/plain\\n\\nok\\n'\n")


def main():
    binary = os.path.abspath(sys.argv[1])
    rows = []
    work = tempfile.mkdtemp(prefix="watchdog-bench-memory-")
    try:
        fns = os.path.join(work, "fns")
        os.makedirs(fns)
        script(fns, "sink.sh", "cat >/dev/null\nprintf 'Content-Type: text/plain\\n\\nok\\n'\n")
        script(fns, "source.sh", "printf 'Content-Type: application/octet-stream\\n\\n'\n"
               f"head -c {GIB} /dev/zero\n")
        script(fns, "sleep.sh", "sleep 2\nprintf 'Content-Type: text/plain\\n\\nok\\n'\n")
        server = Server(binary, fns, "--max-body", "2GiB", "--max-concurrency", "1100",
                        "--timeout", "120s")
        pid = server.proc.pid
        try:
            time.sleep(0.5)
            idle = rss_kib(pid)
            rows.append(("idle RSS", f"{idle / 1024:.1f} MiB", "<= 15 MiB"))
            status, peak = with_peak(pid, lambda: upload(server.port, GIB))
            rows.append(("1 GiB upload: peak RSS growth",
                         f"{(peak - idle) / 1024:.1f} MiB (status {status})", "<= 16 MiB"))
            base = rss_kib(pid)
            (status, total), peak = with_peak(pid, lambda: download(server.port))
            rows.append(("1 GiB download: peak RSS growth",
                         f"{(peak - base) / 1024:.1f} MiB (status {status}, {total} bytes)",
                         "<= 16 MiB"))
            ok, peak = with_peak(pid, lambda: sleepers(server.port, 1000))
            rows.append(("1,000 concurrent sleeping invocations: peak RSS",
                         f"{peak / 1024:.1f} MiB ({ok}/1000 answered 200)", "<= 64 MiB"))
        finally:
            server.stop()

        small, big = os.path.join(work, "t10"), os.path.join(work, "t10k")
        tree(small, 10)
        tree(big, 10_000)
        # Ready time: the median of three starts of each tree. Routing: both servers
        # up at once and measured in turns, so that a drift of this VM's speed
        # does not land on one of them only.
        ready = {}
        for name, root in (("10", small), ("10k", big)):
            times = []
            for _ in range(3):
                s = Server(binary, root)
                times.append(s.ready_after)
                s.stop()
            ready[name] = statistics.median(times)
        rps = {"10": [], "10k": []}
        servers = {name: Server(binary, root) for name, root in (("10", small), ("10k", big))}
        try:
            for _ in range(3):
                for name, s in servers.items():
                    rps[name].append(wrk_rps(s.port, "/group0/no-such-function", seconds=3))
        finally:
            for s in servers.values():
                s.stop()
        rows.append(("10,000-function tree: exec to ready (median of 3 starts)",
                     f"{ready['10k'] * 1000:.0f} ms (10 functions: "
                     f"{ready['10'] * 1000:.0f} ms)", "<= 300 ms"))
        small_rps, big_rps = statistics.median(rps["10"]), statistics.median(rps["10k"])
        rows.append(("routing throughput, 10k vs 10 functions (route-table misses, median of 3 turns)",
                     f"{big_rps:.0f} vs {small_rps:.0f} req/s ({big_rps / small_rps:.2f})",
                     ">= 0.90"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("| figure | measured | target |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
