import ArgumentParser
import BatonBenchKit
import BatonProtocol
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Options of the peers' recipes, shared by every subcommand.
struct RecipeOptions: ParsableArguments {
    @Option(name: .customLong("redis-ttl-ms"), help: "Redis lock TTL (SET ... PX).")
    var redisTTLMilliseconds: UInt32 = 500
    @Option(name: .customLong("redis-backoff-us"), help: "Sleep between failed SET NX tries.")
    var redisBackoffMicroseconds: UInt64 = 100
    @Option(name: .customLong("zookeeper-session-ms"), help: "Requested ZooKeeper session timeout.")
    var zookeeperSessionTimeoutMilliseconds: Int32 = 4_000
    @Option(name: .customLong("etcd-lease-s"), help: "etcd lease TTL.")
    var etcdLeaseTTLSeconds: Int = 60
    @Option(name: .customLong("baton-session-ms"), help: "Baton session timeout.")
    var batonSessionTimeoutMilliseconds: UInt32 = 10_000

    var clientOptions: ClientOptions {
        var options = ClientOptions()
        options.redisTTLMilliseconds = redisTTLMilliseconds
        options.redisBackoffMicroseconds = redisBackoffMicroseconds
        options.zookeeperSessionTimeoutMilliseconds = zookeeperSessionTimeoutMilliseconds
        options.etcdLeaseTTLSeconds = etcdLeaseTTLSeconds
        options.batonSessionTimeoutMilliseconds = batonSessionTimeoutMilliseconds
        return options
    }
}

func parseTarget(_ text: String) throws -> Target {
    guard let target = Target.parse(text) else {
        throw ValidationError("target: baton-unix:PATH, baton-tcp:HOST:PORT, redis:HOST:PORT, zookeeper:HOST:PORT or etcd:HOST:PORT")
    }
    return target
}

func parseEndpoint(unix: String?, tcp: String?) throws -> Endpoint {
    if let unix { return .unix(path: unix) }
    if let tcp, let endpoint = Endpoint.parseTCP(tcp) { return endpoint }
    throw ValidationError("give --unix PATH or --tcp HOST:PORT")
}

func microseconds(_ nanoseconds: UInt64) -> String { formatMicroseconds(nanoseconds) }

struct Loop: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Scenarios 1-3: acquire+release in a loop (uncontended, contended, spread).")
    @Argument(help: "uncontended, contended or spread") var scenario: String
    @Option(help: "Target system; repeat it to spread the clients over several (sidecars, members).") var target: [String]
    @Option(help: "Server process ids whose CPU to count (repeatable).") var pid: [Int32] = []
    @Option(help: "Clients (contended, spread).") var clients = 16
    @Option(help: "Seconds to run.") var seconds = 2.0
    @OptionGroup var recipe: RecipeOptions

    func run() throws {
        guard let kind = LoopScenario(rawValue: scenario) else { throw ValidationError("unknown scenario \(scenario)") }
        raiseDescriptorLimit()
        let result = try runLoop(kind, targets: try target.map(parseTarget), clients: clients, seconds: seconds,
                                 options: recipe.clientOptions, lockPrefix: "/bench/\(scenario)-\(uniqueSuffix())",
                                 serverProcessIDs: pid)
        print("\(scenario) \(target): \(result.pairs) grants in \(String(format: "%.2f", result.elapsedSeconds)) s = "
              + "\(String(format: "%.0f", result.pairsPerSecond))/s; p50 \(microseconds(result.latency.p50)) p99 \(microseconds(result.latency.p99)) "
              + "p999 \(microseconds(result.latency.p999)) us; grants per client \(result.fewestGrants)..\(result.mostGrants); "
              + "overlaps \(result.overlaps); wakeups \(result.wakeups)"
              + (result.serverCPUNanosecondsPerPair.map { "; server CPU \(formatMicroseconds(UInt64($0))) us per pair" } ?? "")
              + (result.clientCPUNanosecondsPerPair.map { "; client CPU \(formatMicroseconds(UInt64($0))) us per pair" } ?? ""))
    }
}

struct Library: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Scenario 1 through the raw client and the Swift library (BlockingClient, async BatonClient), interleaved.",
        discussion: "Each round runs the three once; prints every round's pair p50 and the medians of the library's p50 ÷ the raw client's.")
    @Option(help: "batond's Unix socket.") var unix: String
    @Option(help: "Interleaved rounds.") var rounds = 10
    @Option(help: "Seconds per client per round.") var seconds = 1.0
    @Option(help: "Server process ids whose CPU to count (repeatable).") var pid: [Int32] = []
    @OptionGroup var recipe: RecipeOptions

    func run() throws {
        let endpoint = Endpoint.unix(path: unix)
        let options = recipe.clientOptions
        var ratios: [LibraryClient: [Double]] = [:]
        // This process's CPU and context switches per pair (getrusage around the run, the handshake
        // included): the client's own cost, and how often its threads slept and were woken.
        func measuringClient(_ run: () throws -> LoopResult) rethrows -> (LoopResult, String) {
            var before = rusage(), after = rusage()
            getrusage(Int32(RUSAGE_SELF.rawValue), &before)
            let result = try run()
            getrusage(Int32(RUSAGE_SELF.rawValue), &after)
            func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
            let cpu = seconds(after.ru_utime) + seconds(after.ru_stime) - seconds(before.ru_utime) - seconds(before.ru_stime)
            let pairs = Double(max(result.pairs, 1))
            let switches = Double(after.ru_nvcsw - before.ru_nvcsw + after.ru_nivcsw - before.ru_nivcsw)
            return (result, "p50 \(microseconds(result.latency.p50))"
                + (result.serverCPUNanosecondsPerPair.map { " server-cpu \(formatMicroseconds(UInt64($0)))" } ?? "")
                + String(format: " client-cpu %.1f switches %.2f", cpu * 1e6 / pairs, switches / pairs))
        }
        for round in 0..<rounds {
            let suffix = uniqueSuffix()
            let (raw, rawText) = try measuringClient {
                try runLoop(.uncontended, targets: [.baton(endpoint)], clients: 1, seconds: seconds, options: options,
                            lockPrefix: "/bench/library-raw-\(suffix)", serverProcessIDs: pid)
            }
            var line = "round \(round + 1): raw \(rawText)"
            for kind in LibraryClient.allCases {
                let (result, text) = try measuringClient {
                    try runLibraryUncontended(kind, endpoint: endpoint, seconds: seconds, options: options,
                                              lock: "/bench/library-\(kind.rawValue)-\(suffix)", serverProcessIDs: pid)
                }
                let ratio = Double(result.latency.p50) / Double(raw.latency.p50)
                ratios[kind, default: []].append(ratio)
                line += "; \(kind.title) \(text) (\(String(format: "%.2f", ratio))x)"
            }
            print(line)
        }
        for kind in LibraryClient.allCases {
            let sorted = (ratios[kind] ?? []).sorted()
            guard !sorted.isEmpty else { continue }
            print("\(kind.title): median p50 ÷ raw client's \(String(format: "%.2f", sorted[sorted.count / 2])) "
                  + "(\(String(format: "%.2f", sorted.first!))..\(String(format: "%.2f", sorted.last!)), \(sorted.count) rounds)")
        }
    }
}

struct Gets: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "get of one node: requests/s and per-request p50/p99 (issue 2's figures).")
    @Option(help: "batond's Unix socket.") var unix: String
    @Option(help: "Connections, each on its own thread.") var connections = 1
    @Option(help: "Requests in flight per connection (1 = one at a time).") var depth = 1
    @Option(help: "Seconds to run.") var seconds = 2.0
    @OptionGroup var recipe: RecipeOptions

    func run() throws {
        raiseDescriptorLimit()
        let result = try runBatonGets(endpoint: .unix(path: unix), connections: connections, depth: depth, seconds: seconds,
                                      options: recipe.clientOptions, key: "/bench-get-\(uniqueSuffix())")
        print("get, \(connections) connection(s), depth \(depth): \(String(format: "%.0f", result.requestsPerSecond)) requests/s; "
              + "p50 \(microseconds(result.latency.p50)) p99 \(microseconds(result.latency.p99)) us")
    }
}

struct Takeover: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Scenario 4: time from SIGKILL of a holder process to a waiter holding.")
    @Option(help: "Target system.") var target: String
    @Option(help: "Samples.") var samples = 3
    @OptionGroup var recipe: RecipeOptions

    func run() throws {
        let result = try runTakeover(target: try parseTarget(target), samples: samples, options: recipe.clientOptions,
                                     lockPrefix: "/bench/takeover-\(uniqueSuffix())", executable: selfExecutable())
        print("takeover \(target) (holder: \(result.holderSetting)): " + result.samplesNanoseconds.map(microseconds).joined(separator: ", ") + " us")
    }
}

struct Floor: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Scenario 8: ping-pong of a small frame between two processes.")
    @Option(help: "Unix socket path.") var unix: String?
    @Option(help: "HOST:PORT on loopback.") var tcp: String?
    @Option(help: "Seconds to run.") var seconds = 2.0
    @Flag(help: "Echo with the bare libuv server (baton-echo) instead of the blocking one.") var libuv = false

    func run() throws {
        let server: EchoProcess = libuv ? .libuvNextTo(selfExecutable()) : .blocking(executable: selfExecutable())
        let result = try runFloor(try parseEndpoint(unix: unix, tcp: tcp), seconds: seconds, server: server)
        print("floor: \(String(format: "%.0f", result.roundTripsPerSecond)) round trips/s, p50 \(microseconds(result.latency.p50)) us, "
              + "p99 \(microseconds(result.latency.p99)) us; echo CPU "
              + (result.serverCPUNanosecondsPerMessage.map { formatMicroseconds(UInt64($0)) } ?? "?") + " us per message")
    }
}

/// Reads "<peers-dir>/<name>.pid" (peers.sh writes one per process it starts).
func peerProcessIDs(_ directory: String?, _ names: [String]) -> [Int32]? {
    guard let directory else { return nil }
    let found = names.compactMap { name -> Int32? in
        guard let text = try? String(contentsOfFile: "\(directory)/\(name).pid", encoding: .utf8) else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
    return found.count == names.count ? found : nil
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Runs every scenario against every target given and prints the markdown tables.")
    @Option(name: .customLong("baton-unix"), help: "batond's Unix socket.") var batonUnix: String?
    @Option(name: .customLong("baton-tcp"), help: "batond's TCP HOST:PORT.") var batonTCP: String?
    @Option(name: .customLong("baton-in-memory-unix"), help: "An --in-memory batond's Unix socket (write table).")
    var batonInMemoryUnix: String?
    @Option(name: .customLong("footprint-unix"), help: "A fresh batond's Unix socket for the footprint scenario.")
    var footprintUnix: String?
    @Option(help: "Interleaved rounds of the floor and loop scenarios; each target keeps its best (default 1 quick, 3 full).")
    var rounds: Int?
    @Option(help: "Redis HOST:PORT (default settings: no AOF).") var redis: String?
    @Option(name: .customLong("redis-aof-always"), help: "Redis HOST:PORT with appendonly yes, appendfsync always.")
    var redisAlways: String?
    @Option(name: .customLong("redis-aof-everysec"), help: "Redis HOST:PORT with appendonly yes, appendfsync everysec.")
    var redisEverysec: String?
    @Option(help: "ZooKeeper HOST:PORT.") var zookeeper: String?
    @Option(help: "etcd HOST:PORT (its JSON gateway).") var etcd: String?
    @Option(name: .customLong("peers-dir"), help: "peers.sh's state directory (its *.pid files give the peers' processes).")
    var peersDirectory: String?
    @Flag(help: "Short runs (the whole comparison in under two minutes).") var quick = false
    @Option(help: "Seconds per measurement (default 1 quick, 6 full).") var seconds: Double?
    @Option(help: "Clients in the contended and spread scenarios (and the concurrent writes).") var clients = 16
    @Option(help: "Waiters in the herd scenario (also run with 10).") var waiters: Int?
    @Flag(name: .customLong("no-library"), help: "Skip the Swift client library rows.") var noLibrary = false
    @OptionGroup var recipe: RecipeOptions

    func run() throws {
        var settings = ComparisonSettings()
        settings.options = recipe.clientOptions
        if let batonUnix { settings.targets[.batonUnix] = [.baton(.unix(path: batonUnix))] }
        if let batonTCP { settings.targets[.batonTCP] = [try parseTarget("baton-tcp:" + batonTCP)] }
        if let batonInMemoryUnix { settings.targets[.batonInMemory] = [.baton(.unix(path: batonInMemoryUnix))] }
        if let redis { settings.targets[.redis] = [try parseTarget("redis:" + redis)] }
        if let redisAlways { settings.targets[.redisAlways] = [try parseTarget("redis:" + redisAlways)] }
        if let redisEverysec { settings.targets[.redisEverysec] = [try parseTarget("redis:" + redisEverysec)] }
        if let zookeeper { settings.targets[.zookeeper] = [try parseTarget("zookeeper:" + zookeeper)] }
        if let etcd { settings.targets[.etcd] = [try parseTarget("etcd:" + etcd)] }
        for (column, name) in [(Column.redis, "redis"), (.redisAlways, "redis-always"), (.redisEverysec, "redis-everysec"),
                               (.zookeeper, "zookeeper"), (.etcd, "etcd")] {
            if let found = peerProcessIDs(peersDirectory, [name]) { settings.processIDs[column] = found }
        }
        // run.sh serves Unix and TCP from one batond: its CPU is the Unix socket's peer's.
        if let batonUnix, batonTCP != nil, let processID = try? BlockingSocket.connect(.unix(path: batonUnix)).peerProcessID {
            settings.processIDs[.batonUnix] = [processID]
            settings.processIDs[.batonTCP] = [processID]
        }
        settings.clients = clients
        settings.rounds = max(1, rounds ?? (quick ? 1 : 3))
        if let footprintUnix { settings.footprintEndpoint = .unix(path: footprintUnix) }
        settings.seconds = seconds ?? (quick ? 1 : 6)
        settings.takeoverSamples = quick ? 1 : 5
        settings.herdWaiters = [10, waiters ?? (quick ? 1_000 : 10_000)]
        settings.peerHerdWaitersMax = quick ? 50 : 200
        settings.herdReleases = quick ? 200 : 1_000
        settings.footprintNodes = quick ? 100_000 : 1_000_000
        settings.footprintSessions = quick ? 1_000 : 10_000
        settings.namespaceModes = [.oneAtATime, .pipelined(64), .clients(clients)]
        settings.libraryClients = !noLibrary
        let echo = EchoProcess.libuvNextTo(selfExecutable())
        if case .libuv(let path) = echo, FileManager.default.isExecutableFile(atPath: path) { settings.libuvEcho = echo }
        let report = runComparison(settings)
        printReport(report)
    }
}

struct CompareMultiHost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare-multi-host",
        abstract: "Issue 9's rows: Baton's sidecars over a ZooKeeper ensemble, the direct recipe on it, an etcd cluster.")
    @Option(name: .customLong("sidecar-unix"), help: "A sidecar's Unix socket (repeat for each).") var sidecars: [String] = []
    @Option(name: .customLong("zookeeper-member"), help: "An ensemble member's HOST:PORT (repeat for each).") var members: [String] = []
    @Option(name: .customLong("etcd-member"), help: "An etcd member's client HOST:PORT (repeat for each).") var etcdMembers: [String] = []
    @Option(name: .customLong("peers-dir"), help: "The state directory with zookeeper-N.pid and etcd-N.pid.") var peersDirectory: String?
    @Option(help: "batond, to start (and kill) a sidecar for the sidecar-death row.") var batond: String?
    @Option(help: "The sidecars' --store URL.") var store: String?
    @Option(name: .customLong("sidecar-session-ms"), help: "The killed sidecar's --zookeeper-session-timeout-ms.")
    var sidecarSessionMilliseconds: Int32 = 4_000
    @Flag(help: "Short runs.") var quick = false
    @Option(help: "Seconds per measurement (default 1 quick, 6 full).") var seconds: Double?
    @Option(help: "Interleaved rounds (default 1 quick, 3 full).") var rounds: Int?
    @Option(help: "Clients in the contended and spread scenarios.") var clients = 16
    @OptionGroup var recipe: RecipeOptions

    func run() throws {
        var settings = MultiHostSettings()
        settings.comparison.options = recipe.clientOptions
        if !sidecars.isEmpty { settings.comparison.targets[.batonSidecars] = sidecars.map { .baton(.unix(path: $0)) } }
        if !members.isEmpty {
            settings.comparison.targets[.zookeeperEnsemble] = try members.map { try parseTarget("zookeeper:" + $0) }
            settings.zookeeperMembers = members
        }
        if !etcdMembers.isEmpty { settings.comparison.targets[.etcdCluster] = try etcdMembers.map { try parseTarget("etcd:" + $0) } }
        let ensemble = peerProcessIDs(peersDirectory, members.indices.map { "zookeeper-\($0 + 1)" })
        if let ensemble { settings.comparison.processIDs[.zookeeperEnsemble] = ensemble }
        if let cluster = peerProcessIDs(peersDirectory, etcdMembers.indices.map { "etcd-\($0 + 1)" }) {
            settings.comparison.processIDs[.etcdCluster] = cluster
        }
        // Baton's server CPU is its sidecars' and the ensemble's together: the whole service.
        let sidecarIDs = sidecars.compactMap { try? BlockingSocket.connect(.unix(path: $0)).peerProcessID }
        if sidecarIDs.count == sidecars.count, !sidecars.isEmpty {
            settings.comparison.processIDs[.batonSidecars] = sidecarIDs + (ensemble ?? [])
        }
        settings.comparison.clients = clients
        settings.comparison.rounds = max(1, rounds ?? (quick ? 1 : 3))
        settings.comparison.seconds = seconds ?? (quick ? 1 : 6)
        settings.comparison.takeoverSamples = quick ? 1 : 5
        settings.comparison.libraryClients = false
        settings.batondPath = batond
        settings.store = store
        settings.sidecarSessionTimeoutMilliseconds = sidecarSessionMilliseconds
        settings.sidecarDeathSamples = quick ? 1 : 3
        let report = runMultiHostComparison(settings)
        print(report.table)
        if !report.notes.isEmpty {
            print("")
            for note in report.notes { print("- \(note)") }
        }
    }
}

func printReport(_ report: ComparisonReport) {
    print(report.table)
    if !report.writeTable.isEmpty {
        print("")
        print(report.writeTable)
    }
    print("")
    print("Targets (issue 11), this run:")
    for target in report.targets { print("- \(target)") }
    if !report.notes.isEmpty {
        print("")
        for note in report.notes { print("- \(note)") }
    }
}

struct Herd: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Scenario 5: W waiters on one lock; release-to-grant time, server CPU, clients woken.")
    @Option(help: "Target system.") var target: String
    @Option(help: "Waiters.") var waiters = 10_000
    @Option(help: "Releases measured (Baton).") var releases = 1_000
    @Option(help: "Server process id, for CPU (batond's is found from its Unix socket).") var pid: Int32?
    @OptionGroup var recipe: RecipeOptions

    func run() throws {
        raiseDescriptorLimit()
        let parsed = try parseTarget(target)
        let lock = "/bench/herd-\(uniqueSuffix())"
        let result: HerdResult
        if case .baton(let endpoint) = parsed {
            var processID = pid
            if processID == nil, case .unix = endpoint { processID = try BlockingSocket.connect(endpoint).peerProcessID }
            result = try runBatonHerd(endpoint: endpoint, waiters: waiters, releases: releases, serverProcessIDs: processID.map { [$0] } ?? [],
                                      options: recipe.clientOptions, lock: lock)
        } else {
            result = try runThreadedHerd(target: parsed, waiters: waiters, serverProcessIDs: pid.map { [$0] } ?? [],
                                         options: recipe.clientOptions, lock: lock)
        }
        print("herd \(target) \(waiters) waiters, \(result.releases) releases: handoff p50 \(microseconds(result.handoff.p50)) "
              + "p99 \(microseconds(result.handoff.p99)) us; server CPU/release "
              + (result.serverCPUNanosecondsPerRelease.map { formatMicroseconds(UInt64($0)) } ?? "?") + " us; woken/release "
              + (result.wokenPerRelease.map { String(format: "%.2f", $0) } ?? "?"))
    }
}

struct Holder: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Takeover's holder process.", shouldDisplay: false)
    @Option var target: String
    @Option var lock: String
    @OptionGroup var recipe: RecipeOptions
    func run() throws {
        try holdUntilKilled(target: try parseTarget(target), lock: lock, options: recipe.clientOptions)
    }
}

struct EchoServer: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "echo-server", abstract: "The floor's echo process.", shouldDisplay: false)
    @Option var unix: String?
    @Option var tcp: String?
    func run() throws {
        try runEchoServer(try parseEndpoint(unix: unix, tcp: tcp))
    }
}

struct BatonBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baton-bench",
        abstract: "Drives batond, Redis, ZooKeeper and etcd with many sessions and compares them.",
        subcommands: [Compare.self, CompareMultiHost.self, Loop.self, Library.self, Takeover.self, Herd.self, Floor.self, Gets.self,
                      Holder.self, EchoServer.self, Durability.self, Writes.self])
}

BatonBenchCommand.main()
