#!/usr/bin/env python3
"""Where batond's time goes, from `perf record -g` (perf 6.1 here cannot read the symbols of a Swift
release binary, so this symbolizes with nm and swift-demangle itself).

    perf record -F 4999 -g -p PID -o FILE -- sleep 5
    python3 Benchmarks/profile/attribute.py FILE BINARY [TOP]

Prints (1) per batond function, the share of samples whose nearest batond frame it is (its own
code plus the Swift runtime, libc and kernel work it called directly: "self+runtime"), and (2) the
inclusive share of every batond function on the stack."""

import bisect
import collections
import subprocess
import sys


def load_symbols(binary):
    out = subprocess.run(["nm", "-n", "--defined-only", binary], capture_output=True, text=True).stdout
    addresses, names = [], []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            addresses.append(int(parts[0], 16))
            names.append(parts[2])
    demangled = subprocess.run(["swift-demangle", "--simplified", "--compact"], input="\n".join(names),
                               capture_output=True, text=True).stdout.splitlines()
    if len(demangled) != len(names):
        demangled = names
    return addresses, [d[:140] for d in demangled]


# Categories for the summary: the leaf-most batond frame whose name matches decides (first rule wins);
# samples whose leaf is in the kernel or libuv count there whatever called them.
CATEGORIES = [
    ("metrics/latency stamps", ("requestArrived", "replyRouted", "recordServiceTimes", "ServerLoop.count", "Metrics", "LatencyHistogram")),
    ("logging", ("Logger", "LogHandler")),
    ("codec", ("Codec.", "WireReader", "WireWriter", "FrameSplitter")),
    ("lock recipe (BatonLocks)", ("LockManager", "LockQueue", "WaiterName", "LockPath")),
    ("engine<->locks glue", ("EngineLockNamespace", "Engine.handleLockRequest", "Engine.applyLockEffect", "Engine.routeLockEffects", "Engine.lock")),
    ("namespace", ("Namespace", "TreeDictionary", "_HashNode", "NameOrder", "NodePath", "Node")),
    ("engine dispatch", ("Engine.",)),
    ("server loop shell", ("ServerLoop", "Connection", "Admission", "onRead", "onPrepare", "onCheck", "onAllocate", "onWrite")),
]


def category(names):
    for label, needles in CATEGORIES:
        for name in names:
            if any(needle in name for needle in needles):
                return label
    return "other batond"


def main():
    data, binary = sys.argv[1], sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    addresses, names = load_symbols(binary)
    base = binary.rsplit("/", 1)[-1]
    script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym,dso"], capture_output=True, text=True).stdout
    own = collections.Counter()
    inclusive = collections.Counter()
    total = 0
    categories = collections.Counter()
    for block in script.split("\n\n"):
        frames = [line.split() for line in block.strip().splitlines() if line.strip()]
        if not frames:
            continue
        total += 1
        seen = set()
        nearest = None
        stack_names = []
        leaf = frames[0]
        for frame in frames:
            dso = frame[-1].strip("()")
            if not dso.endswith(base):
                continue
            index = bisect.bisect_right(addresses, int(frame[0], 16)) - 1
            name = names[index] if index >= 0 else "?"
            if nearest is None:
                nearest = name
            stack_names.append(name)
            if name not in seen:
                seen.add(name)
                inclusive[name] += 1
        if nearest is None:
            dso = leaf[-1].strip("()").rsplit("/", 1)[-1]
            nearest = f"[outside batond: {dso} {leaf[1] if len(leaf) > 2 else ''}]"
        own[nearest] += 1
        leaf_dso_name = leaf[-1].strip("()").rsplit("/", 1)[-1]
        if "kernel" in leaf_dso_name:
            categories["kernel (syscalls, scheduling)"] += 1
        elif "libuv" in leaf_dso_name:
            categories["libuv"] += 1
        elif not stack_names:
            categories["outside batond frames"] += 1
        else:
            # Only the innermost few frames: a category means the work itself, not a caller far up.
            categories[category(stack_names[:3])] += 1
    print(f"{total} samples")
    print("\n== by category (Swift runtime, malloc: charged to the batond code that called them) ==")
    for name, count in categories.most_common():
        print(f"{100 * count / total:6.2f}%  {name}")
    print("\n== self+runtime (nearest batond frame) ==")
    for name, count in own.most_common(top):
        print(f"{100 * count / total:6.2f}%  {name}")
    print("\n== inclusive ==")
    for name, count in inclusive.most_common(top):
        print(f"{100 * count / total:6.2f}%  {name}")


if __name__ == "__main__":
    main()
