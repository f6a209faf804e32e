#!/usr/bin/env python3
"""batond's user-space instructions per request, counted exactly (callgrind), whatever the machine's load.

    python3 Benchmarks/profile/instructions.py BATOND BENCH MODE [--top N] [--inclusive] [--keep DIR]

MODE: uncontended (an acquire+release pair, one client) or contended (a grant, 16 clients on one lock);
BENCH is a release `baton-bench`. batond (a release build, `--in-memory`) runs under
`valgrind --tool=callgrind` twice, driven by `BENCH loop MODE` for 3 s and then for 8 s: the difference
of the two runs' instruction totals over the difference of their operations is what one operation
costs, without start-up and shutdown. With --top N, the same difference per function (self, or
--inclusive), demangled with `swift demangle` when it is on PATH.

valgrind cannot read the DWARF of a Swift release binary, so it runs a copy stripped of debug
information (`strip --strip-debug`: the symbol table stays). Only user space is counted: the kernel's
share of a request (read, write, epoll_wait, task switches) is not, so compare builds with this and
quote /proc CPU (cpu_per_op.py, `baton-bench loop`) for what a request costs in all."""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def run_once(binary: str, bench: str, mode: str, seconds: int, workdir: str) -> tuple[str, int]:
    socket_path = os.path.join(workdir, f"batond-{seconds}.sock")
    output = os.path.join(workdir, f"callgrind-{seconds}.out")
    log = open(os.path.join(workdir, f"valgrind-{seconds}.log"), "w")
    daemon = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}",
                               binary, "--socket", socket_path, "--in-memory"], stderr=log, stdout=log)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(socket_path):
            if daemon.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"batond under valgrind did not start: see {log.name}")
            time.sleep(0.1)
        clients = ["--clients", "16"] if mode == "contended" else []
        loop = subprocess.run([bench, "loop", mode, "--target", f"baton-unix:{socket_path}", "--pid", str(daemon.pid),
                               "--seconds", str(seconds)] + clients, capture_output=True, text=True, check=True)
        operations = int(re.search(r"(\d+) grants in", loop.stdout).group(1))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
    return output, operations


def per_function(path: str, inclusive: bool) -> dict[str, int]:
    arguments = ["callgrind_annotate", "--threshold=100"] + (["--inclusive=yes"] if inclusive else []) + [path]
    counts: dict[str, int] = {}
    for line in subprocess.run(arguments, capture_output=True, text=True, check=True).stdout.splitlines():
        match = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(?:\S*:)?(\S+)", line)
        if match and "PROGRAM TOTALS" not in line:
            counts[match.group(2)] = counts.get(match.group(2), 0) + int(match.group(1).replace(",", ""))
    return counts


def total(path: str) -> int:
    with open(path) as text:
        for line in text:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    sys.exit(f"{path}: no totals line")


def demangled(names: list[str]) -> list[str]:
    if not shutil.which("swift"):
        return names
    result = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(names),
                            capture_output=True, text=True)
    lines = result.stdout.splitlines()
    return lines if result.returncode == 0 and len(lines) == len(names) else names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batond")
    parser.add_argument("bench")
    parser.add_argument("mode", choices=["uncontended", "contended"])
    parser.add_argument("--top", type=int, default=0)
    parser.add_argument("--inclusive", action="store_true")
    parser.add_argument("--keep", help="keep the callgrind outputs in this directory")
    arguments = parser.parse_args()
    workdir = arguments.keep or tempfile.mkdtemp(prefix="baton-instructions-")
    os.makedirs(workdir, exist_ok=True)
    binary = os.path.join(workdir, "batond.stripped")
    shutil.copy(arguments.batond, binary)
    subprocess.run(["strip", "--strip-debug", binary], check=True)
    (short, short_ops), (long, long_ops) = (run_once(binary, arguments.bench, arguments.mode, seconds, workdir)
                                            for seconds in (3, 8))
    operations = long_ops - short_ops
    unit = "pair" if arguments.mode == "uncontended" else "grant"
    print(f"{(total(long) - total(short)) / operations:.0f} instructions per {unit} "
          f"({short_ops} and {long_ops} in the two runs)")
    if arguments.top:
        before, after = per_function(short, arguments.inclusive), per_function(long, arguments.inclusive)
        rows = sorted(((after[name] - before.get(name, 0)) / operations, name) for name in after)[::-1][:arguments.top]
        for (count, _), name in zip(rows, demangled([name for _, name in rows])):
            print(f"{count:8.0f}  {name[:160]}")
    if not arguments.keep:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
