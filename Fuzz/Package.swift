// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets, built apart from the product because they only link with `-sanitize=fuzzer`
// (libFuzzer's driver). Build and run them with `scripts/fuzz.sh`.
let package = Package(
    name: "BatonFuzz",
    dependencies: [.package(name: "Baton", path: "..")],
    targets: [
        .systemLibrary(name: "CLibFuzzer", path: "Sources/CLibFuzzer"),
        // Bytes as a client frame body and as a server frame body: decoders never crash, and what
        // decodes re-encodes to something that decodes to the same value.
        .executableTarget(name: "FuzzFrames", dependencies: [
            .product(name: "BatonFuzzSupport", package: "Baton"), "CLibFuzzer",
        ]),
        // Bytes as a script of frames from several connections with time passing, fed to the engine.
        .executableTarget(name: "FuzzEngine", dependencies: [
            .product(name: "BatonFuzzSupport", package: "Baton"), "CLibFuzzer",
        ]),
        // Bytes as a data directory (log segments, snapshots, MARKS, FORMAT) that batond then recovers:
        // it recovers or refuses with a named error. `FuzzRecovery --write-seeds DIR` writes its seeds.
        .executableTarget(name: "FuzzRecovery", dependencies: [
            .product(name: "BatonFuzzSupport", package: "Baton"), "CLibFuzzer",
        ]),
    ]
)
