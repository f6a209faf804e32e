import BatonProtocol
import Foundation

/// What `runDurability` measures, and how long.
public struct DurabilitySettings: Sendable {
    public var executable: String
    public var isDebugBuild: Bool
    /// Seconds per write and lock measurement.
    public var seconds: Double = 3
    /// Rounds of the write and lock measurements (each on fresh daemons); the median round is reported.
    public var rounds = 3
    public var concurrentClients = 16
    public var writeStorages: [DurabilityStorage] = [.fsyncAlways, .fsyncBatch, .fsyncNone, .inMemory]
    public var lockStorages: [DurabilityStorage] = [.inMemory, .fsyncBatch, .fsyncAlways]
    /// Sizes of the recovery and snapshot data sets.
    public var datasetNodes: [Int] = [100_000, 1_000_000]
    /// Restarts of each kind per data set; the median is reported.
    public var recoveryRepetitions = 3
    public var perDirectory = 1_000

    public init(executable: String, isDebugBuild: Bool) {
        self.executable = executable
        self.isDebugBuild = isDebugBuild
    }

    /// Full mode runs in about six minutes on two shared cores; quick in about one.
    public static func preset(quick: Bool, executable: String, isDebugBuild: Bool) -> DurabilitySettings {
        var settings = DurabilitySettings(executable: executable, isDebugBuild: isDebugBuild)
        if quick {
            settings.seconds = 1
            settings.rounds = 1
            settings.datasetNodes = [10_000, 100_000]
            settings.recoveryRepetitions = 1
        }
        return settings
    }
}

public struct DurabilityReport: Sendable {
    public var settings: DurabilitySettings
    /// Per storage: one entry per round, for one client and for `concurrentClients`.
    public var writes: [DurabilityStorage: [(single: DurabilityWriteResult, concurrent: DurabilityWriteResult)]] = [:]
    public var locks: [DurabilityStorage: [LoopResult]] = [:]
    public var datasets: [DurabilityDatasetResult] = []
}

/// Runs every durability measurement; progress goes to `progress` (standard error in the command).
public func runDurability(_ settings: DurabilitySettings,
                          progress: (String) -> Void = { _ in }) throws(BenchError) -> DurabilityReport {
    var report = DurabilityReport(settings: settings)
    // Rounds interleave the storages, so a noisy moment on the machine does not land on one of them.
    for round in 1...settings.rounds {
        for storage in settings.writeStorages {
            progress("writes \(storage), round \(round)")
            let daemon = try DurabilityDaemon(executable: settings.executable, storage: storage)
            try daemon.start()
            let single = try runDurabilityWrites(endpoint: daemon.endpoint, clients: 1, seconds: settings.seconds,
                                                 directory: "/durability/single")
            let concurrent = try runDurabilityWrites(endpoint: daemon.endpoint, clients: settings.concurrentClients,
                                                     seconds: settings.seconds, directory: "/durability/concurrent")
            try daemon.stop()
            report.writes[storage, default: []].append((single, concurrent))
        }
        for storage in settings.lockStorages {
            progress("locks \(storage), round \(round)")
            let daemon = try DurabilityDaemon(executable: settings.executable, storage: storage)
            try daemon.start()
            let result = try runLoop(.uncontended, targets: [.baton(daemon.endpoint)], clients: 1, seconds: settings.seconds,
                                     options: ClientOptions(), lockPrefix: "/durability/lock")
            guard result.overlaps == 0 else { throw BenchError("locks \(storage): two holders at once") }
            try daemon.stop()
            report.locks[storage, default: []].append(result)
        }
    }
    for nodes in settings.datasetNodes {
        progress("recovery and snapshot, \(nodes) nodes")
        report.datasets.append(try runDurabilityDataset(executable: settings.executable, nodes: nodes,
                                                        repetitions: settings.recoveryRepetitions,
                                                        perDirectory: settings.perDirectory))
    }
    return report
}

extension DurabilityReport {
    /// The round whose throughput is the median (its percentiles come from the same run).
    static func medianRound<Result>(_ results: [Result], by value: (Result) -> Double) -> Result? {
        guard !results.isEmpty else { return nil }
        return results.sorted { value($0) < value($1) }[results.count / 2]
    }

    public func medianWrite(_ storage: DurabilityStorage, concurrent: Bool) -> DurabilityWriteResult? {
        let results = (writes[storage] ?? []).map { concurrent ? $0.concurrent : $0.single }
        return Self.medianRound(results, by: \.createsPerSecond)
    }

    public func medianLock(_ storage: DurabilityStorage) -> LoopResult? {
        Self.medianRound(locks[storage] ?? [], by: \.pairsPerSecond)
    }

    /// The report in markdown: one table per figure of issue 4.
    public var markdown: String {
        var lines: [String] = []
        let clients = settings.concurrentClients
        lines.append("### Writes: creates of fresh 16-byte persistent nodes, one request at a time per connection")
        lines.append("")
        lines.append("| Storage | 1 client: creates/s | p50 µs | p99 µs | \(clients) clients: creates/s | p50 µs | p99 µs |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for storage in settings.writeStorages {
            guard let single = medianWrite(storage, concurrent: false), let concurrent = medianWrite(storage, concurrent: true) else { continue }
            lines.append("| `\(storage)` | \(formatCount(single.createsPerSecond)) | \(formatMicroseconds(single.latency.p50)) | "
                         + "\(formatMicroseconds(single.latency.p99)) | \(formatCount(concurrent.createsPerSecond)) | "
                         + "\(formatMicroseconds(concurrent.latency.p50)) | \(formatMicroseconds(concurrent.latency.p99)) |")
        }
        lines.append("")
        lines.append("### Locks: uncontended acquire+release pairs, one client, one lock")
        lines.append("")
        lines.append("| Storage | pairs/s | p50 µs | p99 µs | vs `--in-memory` |")
        lines.append("|---|---:|---:|---:|---:|")
        let reference = medianLock(.inMemory)?.pairsPerSecond
        for storage in settings.lockStorages {
            guard let result = medianLock(storage) else { continue }
            let ratio = reference.map { formatRatio(result.pairsPerSecond / $0) } ?? ""
            lines.append("| `\(storage)` | \(formatCount(result.pairsPerSecond)) | \(formatMicroseconds(result.latency.p50)) | "
                         + "\(formatMicroseconds(result.latency.p99)) | \(ratio) |")
        }
        lines.append("")
        lines.append("### Recovery (`--fsync batch`; nodes in directories of \(settings.perDirectory), 16 bytes of data)")
        lines.append("")
        lines.append("| Nodes | On disk | Previous batond | Records replayed | Exec to first reply (ms) | VmRSS after | VmHWM after | Nodes found |")
        lines.append("|---:|---|---|---:|---:|---:|---:|---:|")
        for dataset in datasets {
            for recovery in dataset.recoveries {
                let replayed = recovery.samples.map(\.recordsReplayed).max() ?? 0
                let found = Set(recovery.samples.map(\.nodesFound)).sorted().map(String.init).joined(separator: "/")
                lines.append("| \(formatCount(Double(recovery.nodes))) | \(recovery.diskState.rawValue) | \(recovery.stop.rawValue) | "
                             + "\(replayed) | \(formatMilliseconds(recovery.medianReadyNanoseconds)) | "
                             + "\(formatBytes(recovery.medianResidentBytes)) | \(formatBytes(recovery.medianPeakResidentBytes)) | \(found) |")
            }
        }
        lines.append("")
        lines.append("| Nodes | Load, pipelined (nodes/s) | VmRSS of the loading batond | Log on disk |")
        lines.append("|---:|---:|---:|---:|")
        for dataset in datasets {
            lines.append("| \(formatCount(Double(dataset.nodes))) | \(formatCount(Double(dataset.nodes) / dataset.loadSeconds)) | "
                         + "\(formatBytes(dataset.liveResidentBytes)) | \(formatBytes(dataset.dataDirectoryBytes)) |")
        }
        lines.append("")
        lines.append("### Snapshot: loop stall (batond's `loop_stall_microseconds`) and gets on another connection")
        lines.append("")
        lines.append("| Nodes | Loop stall µs | Serialize + write ms | Snapshot | get p50 µs before | get max µs before | get p50 µs during | get max µs during | gets during |")
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for dataset in datasets {
            let snapshot = dataset.snapshot
            lines.append("| \(formatCount(Double(snapshot.nodes))) | \(snapshot.stallMicroseconds) | \(snapshot.writeMilliseconds) | "
                         + "\(formatBytes(UInt64(snapshot.snapshotBytes))) | \(formatMicroseconds(snapshot.baseline.p50)) | "
                         + "\(formatMicroseconds(snapshot.baseline.max)) | \(formatMicroseconds(snapshot.during.p50)) | "
                         + "\(formatMicroseconds(snapshot.during.max)) | \(snapshot.during.count) |")
        }
        return lines.joined(separator: "\n")
    }
}
