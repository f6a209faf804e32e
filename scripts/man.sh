#!/usr/bin/env bash
# Regenerates the man pages in docs/man from the argument parsers (swift-argument-parser's
# generate-manual plugin): run after changing a command's options or help. `man docs/man/baton.1` reads one.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:/opt/swift/bin:$PATH"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
swift package --allow-writing-to-package-directory generate-manual --output-directory "$out" >&2
for page in baton batond; do
    # `baton __exec` is baton run's internal first step, not a command for people.
    awk '/^\.It Em __exec$/ { skip = 1; next } skip && /^\.El$/ { skip = 0; next } !skip' "$out/$page.1" > "docs/man/$page.1"
done
echo "docs/man: $(ls docs/man | tr '\n' ' ')"
