#!/usr/bin/env bash
# Measures the durable store (issue 4's figures) and prints markdown tables:
#   Benchmarks/durability.sh --quick   (about a minute once built)
#   Benchmarks/durability.sh           (full: under ten minutes)
# It builds batond and baton-bench in release mode; `baton-bench durability` then starts its own
# batond processes on temporary sockets and data directories under /tmp and removes them.
# Extra arguments go to `baton-bench durability` (e.g. --nodes 1000000 --repetitions 5 --seconds 5).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
echo "durability.sh: building (release)" >&2
swift build -c release --product batond 2>&1 | tail -3 >&2
swift build -c release --product baton-bench 2>&1 | tail -3 >&2
BIN=$(swift build -c release --show-bin-path)

echo "durability.sh: machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr); /tmp on $(df --output=fstype /tmp | tail -1)" >&2
exec "$BIN/baton-bench" durability --batond "$BIN/batond" "$@"
