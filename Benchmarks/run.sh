#!/usr/bin/env bash
# Runs the whole comparison on this machine and prints one markdown table:
#   Benchmarks/run.sh --quick   (under two minutes once built)
#   Benchmarks/run.sh           (full: under fifteen minutes)
#   Benchmarks/run.sh --multi-host [--quick]   (issue 9's rows, a separate run: a 3-member ZooKeeper
#       ensemble with 3 batond sidecars on it, the direct recipe on the same ensemble, a 3-member etcd cluster)
# It builds baton-bench and batond in release mode, starts the peers (peers.sh up) and a batond on a
# temporary Unix socket and a loopback TCP port, runs `baton-bench compare`, and stops all it started.
# Extra arguments go to `baton-bench compare` (e.g. --clients 32, --waiters 5000, --seconds 2).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=()
MULTI_HOST=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=(--quick); shift ;;
        --multi-host) MULTI_HOST=1; shift ;;
        *) break ;;
    esac
done
BATON_TCP_PORT=${BATON_TCP_PORT:-17400}
WORK=$(mktemp -d /tmp/baton-bench-run.XXXXXX)
export BATON_BENCH_PEERS_DIR=${BATON_BENCH_PEERS_DIR:-$WORK/peers}
BATOND_PID=""
FOOTPRINT_PID=""
MEMORY_PID=""
SIDECAR_PIDS=""

cleanup() {
    for pid in $BATOND_PID $FOOTPRINT_PID $MEMORY_PID $SIDECAR_PIDS; do
        if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; fi
    done
    "$ROOT/Benchmarks/peers.sh" down || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cd "$ROOT"
echo "run.sh: building (release)" >&2
swift build -c release --product batond 2>&1 | tail -3 >&2
swift build -c release --product baton-bench 2>&1 | tail -3 >&2
swift build -c release --product baton-echo 2>&1 | tail -3 >&2
BIN=$(swift build -c release --show-bin-path)

# 10,000 waiters are 10,000 sockets on each side.
ulimit -n "$(ulimit -Hn)"

if [ -n "$MULTI_HOST" ]; then
    "$ROOT/Benchmarks/peers.sh" up-multi-host
    # Three sidecars on the ensemble, each with its own socket; the sidecar-death row starts (and kills) a fourth.
    STORE="zookeeper://127.0.0.1:12281,127.0.0.1:12282,127.0.0.1:12283/baton-bench-$$"
    SIDECAR_SESSION_MS=4000   # the ensemble's minimum (2 x tickTime): a dead sidecar's locks go after it
    SIDECAR_ARGS=()
    for n in 1 2 3; do
        "$BIN/batond" --socket "$WORK/sidecar$n.sock" --store "$STORE" --zookeeper-session-timeout-ms "$SIDECAR_SESSION_MS" \
            --log-level warning > "$WORK/sidecar$n.log" 2>&1 &
        SIDECAR_PIDS="$SIDECAR_PIDS $!"
        SIDECAR_ARGS+=(--sidecar-unix "$WORK/sidecar$n.sock")
    done
    for n in 1 2 3; do
        for _ in $(seq 1 100); do [ -S "$WORK/sidecar$n.sock" ] && break; sleep 0.1; done
        [ -S "$WORK/sidecar$n.sock" ] || { echo "run.sh: sidecar $n did not start:" >&2; cat "$WORK/sidecar$n.log" >&2; exit 1; }
    done
    echo "run.sh: machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr)" >&2
    "$ROOT/Benchmarks/peers.sh" versions >&2
    "$BIN/baton-bench" compare-multi-host "${MODE[@]}" "${SIDECAR_ARGS[@]}" \
        --zookeeper-member 127.0.0.1:12281 --zookeeper-member 127.0.0.1:12282 --zookeeper-member 127.0.0.1:12283 \
        --etcd-member 127.0.0.1:12471 --etcd-member 127.0.0.1:12473 --etcd-member 127.0.0.1:12475 \
        --peers-dir "$BATON_BENCH_PEERS_DIR" --batond "$BIN/batond" --store "$STORE" \
        --sidecar-session-ms "$SIDECAR_SESSION_MS" "$@"
    exit 0
fi

"$ROOT/Benchmarks/peers.sh" up

(exec 3<>"/dev/tcp/127.0.0.1/$BATON_TCP_PORT") 2>/dev/null && { echo "run.sh: port $BATON_TCP_PORT is taken" >&2; exit 1; }
SOCKET="$WORK/batond.sock"
# batond with its default durability (--fsync batch, as shipped), data in the temporary directory.
mkdir -p "$WORK/batond"
# TCP requires a token: batond reads it from --tcp-token-file, baton-bench from $BATON_TCP_TOKEN_FILE.
# Plain TCP on loopback (--tcp-plaintext), as the peers it is compared with are measured.
export BATON_TCP_TOKEN_FILE="$WORK/tcp.token"
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$BATON_TCP_TOKEN_FILE")
# Every simulated client is this one uid: the per-uid session quota (default 10,000) is raised so that
# 10,000 herd waiters (and 10,000 footprint sessions) plus their releaser fit; and one write client
# creates more than the default 100,000 nodes per session when creates run at 100k/s for 3 s.
QUOTA=(--sessions-per-peer-max 30000 --nodes-per-session-max 10000000)
"$BIN/batond" --socket "$SOCKET" --listen "127.0.0.1:$BATON_TCP_PORT" --tcp-token-file "$BATON_TCP_TOKEN_FILE" --tcp-plaintext \
    --data-dir "$WORK/batond" --log-level warning "${QUOTA[@]}" > "$WORK/batond.log" 2>&1 &
BATOND_PID=$!
for _ in $(seq 1 100); do [ -S "$SOCKET" ] && break; sleep 0.1; done
[ -S "$SOCKET" ] || { echo "run.sh: batond did not start:" >&2; cat "$WORK/batond.log" >&2; exit 1; }

# A second, fresh batond for the footprint scenario, so its figures do not include the other scenarios' state.
FOOTPRINT_SOCKET="$WORK/footprint.sock"
mkdir -p "$WORK/footprint"
"$BIN/batond" --socket "$FOOTPRINT_SOCKET" --data-dir "$WORK/footprint" --log-level warning "${QUOTA[@]}" > "$WORK/footprint.log" 2>&1 &
FOOTPRINT_PID=$!
for _ in $(seq 1 100); do [ -S "$FOOTPRINT_SOCKET" ] && break; sleep 0.1; done

# A third, --in-memory batond for the write table (no log, no fsync: Redis's default promise).
MEMORY_SOCKET="$WORK/memory.sock"
"$BIN/batond" --socket "$MEMORY_SOCKET" --in-memory --log-level warning "${QUOTA[@]}" > "$WORK/memory.log" 2>&1 &
MEMORY_PID=$!
for _ in $(seq 1 100); do [ -S "$MEMORY_SOCKET" ] && break; sleep 0.1; done

echo "run.sh: machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr)" >&2
"$ROOT/Benchmarks/peers.sh" versions >&2
"$BIN/baton-bench" compare "${MODE[@]}" \
    --baton-unix "$SOCKET" --baton-tcp "127.0.0.1:$BATON_TCP_PORT" \
    --baton-in-memory-unix "$MEMORY_SOCKET" \
    --redis 127.0.0.1:${REDIS_PORT:-16379} --redis-aof-always 127.0.0.1:${REDIS_ALWAYS_PORT:-16380} \
    --redis-aof-everysec 127.0.0.1:${REDIS_EVERYSEC_PORT:-16381} --zookeeper 127.0.0.1:${ZOOKEEPER_PORT:-12181} --etcd 127.0.0.1:${ETCD_PORT:-12379} \
    --peers-dir "$BATON_BENCH_PEERS_DIR" --footprint-unix "$FOOTPRINT_SOCKET" "$@"
