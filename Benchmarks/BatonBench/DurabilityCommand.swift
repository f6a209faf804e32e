import ArgumentParser
import BatonBenchKit
import Foundation

/// Issue 4's figures: write throughput and latency per fsync policy, lock pairs with the store on,
/// recovery time and memory, snapshot stall. Starts its own batond processes.
struct Durability: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Durable store figures: creates per fsync policy, lock pairs, recovery of N nodes, snapshot stall.",
        discussion: "Starts its own batond (release build when found, else debug; --batond or $BATOND_PATH to choose) "
            + "on temporary sockets and data directories under /tmp, and prints markdown tables.")
    @Flag(help: "Short runs (10k and 100k node data sets, one round: about a minute).") var quick = false
    @Option(help: "The batond executable.") var batond: String?
    @Option(help: "Seconds per write and lock measurement (default 1 quick, 3 full).") var seconds: Double?
    @Option(help: "Rounds of the write and lock measurements; the median is reported (default 1 quick, 3 full).") var rounds: Int?
    @Option(help: "Restarts of each kind per data set; the median is reported (default 1 quick, 3 full).") var repetitions: Int?
    @Option(help: "Data set sizes, comma-separated (default 10000,100000 quick; 100000,1000000 full).") var nodes: String?
    @Option(help: "Concurrent clients in the write measurement.") var clients = 16

    func run() throws {
        let located: (path: String, isDebug: Bool)
        if let batond {
            located = (batond, batond.contains("/debug/"))
        } else {
            guard let found = locateBatond() else {
                throw ValidationError("no batond found: build it (swift build -c release --product batond) or pass --batond")
            }
            located = found
        }
        var settings = DurabilitySettings.preset(quick: quick, executable: located.path, isDebugBuild: located.isDebug)
        if let seconds { settings.seconds = seconds }
        if let rounds { settings.rounds = max(1, rounds) }
        if let repetitions { settings.recoveryRepetitions = max(1, repetitions) }
        if let nodes {
            let sizes = nodes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !sizes.isEmpty, sizes.allSatisfy({ $0 > 0 }) else { throw ValidationError("--nodes: positive counts, comma-separated") }
            settings.datasetNodes = sizes
        }
        settings.concurrentClients = max(1, clients)
        raiseDescriptorLimit()
        let started = MonotonicClock.nanoseconds()
        let report = try runDurability(settings) { line in
            FileHandle.standardError.write(Data("durability: \(line)\n".utf8))
        }
        let minutes = Double(MonotonicClock.nanoseconds() - started) / 60e9
        print("batond: \(located.path)" + (located.isDebug ? " (DEBUG build: no release batond found; figures are not representative)" : " (release)"))
        print("mode: \(quick ? "quick" : "full"); \(settings.rounds) round(s) of \(settings.seconds) s; "
              + "\(settings.recoveryRepetitions) restart(s) per kind; took \(String(format: "%.1f", minutes)) min")
        print("")
        print(report.markdown)
    }
}
