#!/usr/bin/env bash
# Runs a libFuzzer target for SECONDS: scripts/fuzz.sh frames|engine|recovery|all SECONDS [libFuzzer flags...]
# Builds Fuzz/ (release, -sanitize=fuzzer,address) into .build-fuzz; the corpus lives in
# .build-fuzz/corpus/TARGET, seeded from Proto/vectors (frames, engine) or from data directories the
# store writes (recovery: `FuzzRecovery --write-seeds`); crashes are written to .build-fuzz/findings/.
# Prints libFuzzer's final stats; exits non-zero if the target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:/opt/swift/bin:$PATH"
target="${1:?usage: scripts/fuzz.sh frames|engine|recovery|all SECONDS [libFuzzer flags...]}"
seconds="${2:?usage: scripts/fuzz.sh frames|engine|recovery|all SECONDS [libFuzzer flags...]}"
shift 2
if [ "$target" = all ]; then
    for each in frames engine recovery; do "$0" "$each" "$seconds" "$@"; done
    exit 0
fi
case "$target" in
    frames) product=FuzzFrames ;;
    engine) product=FuzzEngine ;;
    recovery) product=FuzzRecovery ;;
    *) echo "unknown target '$target' (frames, engine, recovery, all)" >&2; exit 64 ;;
esac
scratch="$PWD/.build-fuzz"
swift build --package-path Fuzz --scratch-path "$scratch" -c release --product "$product" \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld >&2
corpus="$scratch/corpus/$target"
findings="$scratch/findings/$target"
mkdir -p "$corpus" "$findings"
if [ "$target" = recovery ]; then
    # Seed: real data directories (empty, a log, snapshots with logs after them) as archives.
    "$scratch/release/$product" --write-seeds "$corpus"
else
# Seed: every golden frame body (the bytes after the length prefix), one file each.
python3 - "$corpus" Proto/vectors/*.hex <<'PY'
import sys, os
out = sys.argv[1]
for path in sys.argv[2:]:
    for line in open(path):
        line = line.split('#', 1)[0].strip()
        if ':' not in line:
            continue
        name, digits = line.split(':', 1)
        frame = bytes.fromhex(''.join(digits.split()))
        with open(os.path.join(out, 'seed-' + name.strip()), 'wb') as f:
            f.write(frame[4:])
PY
fi
"$scratch/release/$product" "$corpus" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$findings/" "$@"
