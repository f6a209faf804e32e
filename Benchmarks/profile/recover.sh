#!/bin/sh
# Recovery cost: batond on a data directory from start to its "ready" line (recovery done); prints its
# CPU seconds (all threads, /proc/PID/task/*/schedstat) at that moment, then stops it with SIGTERM.
#   sh Benchmarks/profile/recover.sh BINARY DATA_DIR
LOG=${TMPDIR:-/tmp}/baton-recover-$$.log
"$1" --socket ${TMPDIR:-/tmp}/baton-recover-$$.sock --data-dir "$2" --log-level info --nodes-per-session-max 2000000 > $LOG 2>&1 &
P=$!
while ! grep -q "ready" $LOG; do sleep 0.02; done
CPU=$(cat /proc/$P/task/*/schedstat | awk '{s+=$1} END {printf "%.2f", s/1e9}')
echo "$1: CPU to ready ${CPU} s"
kill $P; wait $P; rm -f $LOG
