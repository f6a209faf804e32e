// swift-tools-version:6.0
import PackageDescription

// Module map (one module per concern; Tests/ mirrors Sources/):
//   BatonProtocol  wire types and codec (pure)          -> Proto/PROTOCOL.md
//   BatonNamespace data tree, sessions, watches (pure, time is an input)
//   BatonLocks     the lock recipe over any namespace (pure)
//   BatonAccess    access rules: the rule file and who may do what where (pure)
//   BatonEngine    the state machine the server drives: namespace + locks + log records (pure)
//   BatonStore     write-ahead log and snapshots (files, no event loop)
//   BatonZooKeeper the zookeeper:// store: the C client driven by its owner's loop, the recipe's namespace over it
//   BatonServer    the libuv shell: listeners, connections, timers (only module importing CLibUV)
//   BatonClient    the Swift client library (blocking and async)
//   BatonTLS       TLS over memory buffers (OpenSSL), for batond's TCP listener and the client
//   batond, baton  the daemon and the CLI
// The request path's modules (namespace, lock recipe, engine, server loop, store) are classes whose
// stored properties Swift checks for overlapping access at run time (`swift_beginAccess`): about a
// tenth of a pipelined set's CPU (BENCHMARKS.md, "The server's per-request shell"). Debug builds, which the
// tests run, keep the checks.
let uncheckedExclusivityInRelease: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "Baton",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "batond", targets: ["batond"]),
        .executable(name: "baton", targets: ["baton"]),
        .executable(name: "baton-bench", targets: ["BatonBench"]),
        .executable(name: "baton-echo", targets: ["BatonEcho"]),
        .library(name: "BatonClient", targets: ["BatonClient"]),
        // What the libFuzzer targets in Fuzz/ run; the test suite replays its corpus too.
        .library(name: "BatonFuzzSupport", targets: ["BatonFuzzSupport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // batond's configuration file (--config).
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        // `swift package generate-documentation --target BatonClient` (scripts/docs.sh).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CLibUV", path: "Sources/CLibUV", pkgConfig: "libuv",
                       providers: [.apt(["libuv1-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CProcessControl", path: "Sources/CProcessControl"),
        // TLS for TCP (the system's OpenSSL), over memory buffers: batond's loop and the client move the bytes.
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .target(name: "BatonTLS", dependencies: ["COpenSSL"]),
        .target(name: "BatonProtocol"),
        // The git revision in `--version`, hello and metrics: written at build time (Plugins/GitRevision)
        // into a module only the executables and tests import, so a commit recompiles little.
        .plugin(name: "GitRevision", capability: .buildTool()),
        .target(name: "BatonRevision", dependencies: ["BatonProtocol"], plugins: ["GitRevision"]),
        .target(name: "BatonNamespace", dependencies: [
            "BatonProtocol",
            .product(name: "Collections", package: "swift-collections"),
        ], swiftSettings: uncheckedExclusivityInRelease),
        // Whole-module bodies exported (cross-module optimisation), so the engine's and the ZooKeeper
        // store's `LockManager<LockTicket>` is specialised instead of running the generic recipe
        // through metadata lookups and witness tables on every request. Unchecked exclusivity as
        // elsewhere: the recipe's state is in classes, each field access a runtime check otherwise.
        .target(name: "BatonLocks", dependencies: [
            "BatonProtocol",
            .product(name: "Collections", package: "swift-collections"),
        ], swiftSettings: uncheckedExclusivityInRelease + [.unsafeFlags(["-cross-module-optimization"])]),
        .target(name: "BatonAccess", dependencies: ["BatonProtocol"]),
        .target(name: "BatonEngine", dependencies: [
            "BatonProtocol", "BatonNamespace", "BatonLocks", "BatonAccess",
            .product(name: "Collections", package: "swift-collections"),
        ], swiftSettings: uncheckedExclusivityInRelease),
        .target(name: "BatonStore", dependencies: [
            "CZlib",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: uncheckedExclusivityInRelease),
        .target(name: "BatonServer", dependencies: [
            "CLibUV", "BatonProtocol", "BatonEngine", "BatonAccess", "BatonStore", "BatonZooKeeper", "BatonTLS",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "DequeModule", package: "swift-collections"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ], swiftSettings: uncheckedExclusivityInRelease),
        .target(name: "BatonClient", dependencies: ["BatonProtocol", "BatonTLS"]),
        .executableTarget(name: "batond", dependencies: [
            "BatonServer", "BatonZooKeeper", "BatonRevision",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "TOMLKit", package: "TOMLKit"),
        ]),
        .executableTarget(name: "baton", dependencies: [
            "BatonClient", "BatonProtocol", "BatonRevision", "CProcessControl",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // The official single-threaded ZooKeeper C client: the zookeeper:// store and the benchmarks' direct recipe.
        .systemLibrary(name: "CZooKeeper", path: "Sources/CZooKeeper",
                       providers: [.apt(["libzookeeper-st-dev"])]),
        .target(name: "BatonZooKeeper", dependencies: [
            "CZooKeeper", "BatonProtocol", "BatonNamespace", "BatonLocks", "BatonEngine",
        ]),
        // Benchmarks live apart from the product: their own C clients, their own entry point.
        .systemLibrary(name: "CHiredis", path: "Benchmarks/CHiredis", pkgConfig: "hiredis",
                       providers: [.apt(["libhiredis-dev"])]),
        .target(name: "BatonBenchKit", dependencies: [
            "BatonProtocol", "BatonClient", "CZooKeeper", "CHiredis",
            .product(name: "Histogram", package: "hdrhistogram-swift"),
        ], path: "Benchmarks/BatonBenchKit"),
        .executableTarget(name: "BatonBench", dependencies: [
            "BatonBenchKit",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Benchmarks/BatonBench"),
        // The bare libuv echo server (C): the CPU a message costs on the loop alone, beside batond's.
        .executableTarget(name: "BatonEcho", path: "Benchmarks/Echo", linkerSettings: [.linkedLibrary("uv")]),

        // Starts a real batond on a temporary socket and talks to it: shared by the integration tests.
        .target(name: "BatonTestSupport", dependencies: ["BatonProtocol"], path: "Tests/BatonTestSupport"),

        .target(name: "BatonFuzzSupport", dependencies: [
            "BatonProtocol", "BatonEngine", "BatonNamespace", "BatonStore", "BatonTestSupport",
            .product(name: "Logging", package: "swift-log"),
        ],
                path: "Fuzz/Support"),

        .testTarget(name: "BatonFuzzTests", dependencies: ["BatonFuzzSupport", "BatonProtocol", "BatonTestSupport"]),
        .testTarget(name: "BatonProtocolTests", dependencies: ["BatonProtocol", "BatonTestSupport"]),
        .testTarget(name: "BatonNamespaceTests", dependencies: ["BatonNamespace", "BatonProtocol", "BatonTestSupport"]),
        .testTarget(name: "BatonLocksTests", dependencies: ["BatonLocks", "BatonProtocol", "BatonTestSupport"]),
        .testTarget(name: "BatonAccessTests", dependencies: ["BatonAccess", "BatonProtocol"]),
        .testTarget(name: "BatonEngineTests", dependencies: ["BatonEngine", "BatonProtocol", "BatonTestSupport"]),
        .testTarget(name: "BatonStoreTests", dependencies: ["BatonStore"]),
        .testTarget(name: "BatonTLSTests", dependencies: ["BatonTLS", "BatonTestSupport"]),
        .testTarget(name: "BatonServerTests", dependencies: ["BatonTestSupport", "BatonProtocol", "BatonServer", "BatonEngine", "BatonRevision", "batond", "baton"]),
        .testTarget(name: "BatonClientTests", dependencies: ["BatonTestSupport", "BatonClient", "BatonProtocol", "BatonRevision", "batond", "baton"]),
        .testTarget(name: "BatonZooKeeperTests", dependencies: [
            "BatonTestSupport", "BatonZooKeeper", "BatonLocks", "BatonProtocol", "BatonNamespace", "BatonRevision", "CZooKeeper",
            "batond", "baton",
        ]),
        .testTarget(name: "BatonBenchTests", dependencies: ["BatonTestSupport", "BatonBenchKit", "batond"]),
    ]
)
