import ArgumentParser
import BatonBenchKit
import Foundation

/// The write table's rows alone (compare's section 6), for A/B runs of batond builds side by side.
struct Writes: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Namespace writes (set, create) one at a time and from N clients: batond Unix sockets and/or a Redis.")
    @Option(help: "batond's Unix socket; repeat it to alternate several builds, round by round.") var unix: [String] = []
    @Option(help: "Redis HOST:PORT (with the AOF settings to compare).") var redis: String?
    @Option(help: "Concurrent clients.") var clients = 16
    @Option(help: "Seconds per row.") var seconds = 2.0
    @Option(help: "Rounds (targets alternate within each).") var rounds = 1
    @Option(help: "Operations, comma-separated.") var operations = "set,create"
    @Flag(help: "Only the N-client rows.") var concurrentOnly = false
    @OptionGroup var recipe: RecipeOptions

    func run() throws {
        raiseDescriptorLimit()
        let modes: [NamespaceMode] = concurrentOnly ? [.clients(clients)] : [.oneAtATime, .clients(clients)]
        let operations = operations.split(separator: ",").map(String.init)
        for round in 1...rounds {
            var targets: [(String, () throws -> NamespaceResult)] = unix.map { path in
                (path, { try runBatonNamespace(endpoint: .unix(path: path), seconds: seconds, modes: modes, operations: operations,
                                               options: recipe.clientOptions, directory: "/bench/writes-\(uniqueSuffix())") })
            }
            if let redis, let colon = redis.lastIndex(of: ":"), let port = UInt16(redis[redis.index(after: colon)...]) {
                let host = String(redis[..<colon])
                targets.append((redis, { try runRedisNamespace(host: host, port: port, seconds: seconds, modes: modes, operations: operations,
                                                               options: recipe.clientOptions, prefix: "/bench/writes-\(uniqueSuffix())") }))
            }
            for (name, measure) in targets {
                let result = try measure()
                let cells = operations.flatMap { operation in
                    modes.map { "\(operation) \($0): \(String(format: "%.0f", result.operationsPerSecond[operation]?[$0] ?? 0))/s" }
                }
                print("round \(round) \(name): " + cells.joined(separator: ", "))
            }
        }
    }
}
