import ArgumentParser
import BatonBenchKit
import BatonProtocol
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
    @Option(help: "Target system.") var target: String
    @Option(help: "Clients (contended, spread).") var clients = 16
    @Option(help: "Seconds to run.") var seconds = 2.0
    @OptionGroup var recipe: RecipeOptions

    func run() throws {
        guard let kind = LoopScenario(rawValue: scenario) else { throw ValidationError("unknown scenario \(scenario)") }
        raiseDescriptorLimit()
        let result = try runLoop(kind, target: try parseTarget(target), clients: clients, seconds: seconds,
                                 options: recipe.clientOptions, lockPrefix: "/bench/\(scenario)-\(uniqueSuffix())")
        print("\(scenario) \(target): \(result.pairs) grants in \(String(format: "%.2f", result.elapsedSeconds)) s = "
              + "\(String(format: "%.0f", result.pairsPerSecond))/s; p50 \(microseconds(result.latency.p50)) p99 \(microseconds(result.latency.p99)) "
              + "p999 \(microseconds(result.latency.p999)) us; grants per client \(result.fewestGrants)..\(result.mostGrants); "
              + "overlaps \(result.overlaps); wakeups \(result.wakeups)")
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

    func run() throws {
        let result = try runFloor(try parseEndpoint(unix: unix, tcp: tcp), seconds: seconds, executable: selfExecutable())
        print("floor: \(String(format: "%.0f", result.roundTripsPerSecond)) round trips/s, p50 \(microseconds(result.latency.p50)) us, "
              + "p99 \(microseconds(result.latency.p99)) us")
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
        subcommands: [Loop.self, Takeover.self, Floor.self,
                      Holder.self, EchoServer.self])
}

BatonBenchCommand.main()
