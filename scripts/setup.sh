#!/usr/bin/env bash
# Installs what building and testing Baton needs on a Debian machine (idempotent).
# libuv for the daemon; zlib for log checksums; the ZooKeeper C client for the zookeeper:// store (and the
# benchmarks); the ZooKeeper server (Java 17 runs it) for the multi-host tests; hiredis for the benchmark runner;
# python3 (the Python client's tests, fuzz corpus seeding), iproute2 (network-partition tests) and util-linux
# (setpriv, for the tests' throwaway users).
set -euo pipefail
packages=(libuv1-dev pkg-config zlib1g-dev libssl-dev openssl libzookeeper-st-dev zookeeper libhiredis-dev python3 iproute2 util-linux)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update
    $sudo apt-get install -y "${missing[@]}"
fi
