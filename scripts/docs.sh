#!/usr/bin/env bash
# Builds the BatonClient documentation (DocC catalog Sources/BatonClient/BatonClient.docc) with
# swift-docc-plugin into .build-docs/BatonClient.doccarchive; fails on any DocC warning (an
# unresolved symbol link, say). scripts/docs.sh [--preview] (--preview serves it on localhost).
# Its own scratch path, so it can run while another build holds .build.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:/opt/swift/bin:$PATH"
scratch="$PWD/.build-docs"
if [ "${1:-}" = --preview ]; then
    exec swift package --scratch-path "$scratch" --disable-sandbox preview-documentation --target BatonClient
fi
log="$scratch/docs.log"
mkdir -p "$scratch"
swift package --scratch-path "$scratch" --allow-writing-to-directory "$scratch" generate-documentation \
    --target BatonClient --output-path "$scratch/BatonClient.doccarchive" --warnings-as-errors 2>&1 | tee "$log"
# Belt and braces: docc prints "warning:" for links it cannot resolve.
if grep "warning:" "$log" | grep -qv "prohibited flag"; then
    echo "docs.sh: DocC warnings (above)" >&2
    exit 1
fi
echo "docs.sh: $scratch/BatonClient.doccarchive"
