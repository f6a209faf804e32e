import BatonProtocol
import Foundation
import Histogram

/// One restart of a batond over an existing data directory.
public struct DurabilityRecoverySample: Sendable {
    /// From exec to the first reply (the namespace recovered and the loop serving).
    public var readyNanoseconds: UInt64
    /// VmRSS and VmHWM of batond right after it answered.
    public var residentBytes: UInt64
    public var peakResidentBytes: UInt64
    /// From batond's "namespace recovered" line.
    public var recordsReplayed: Int
    /// Nodes found under the loaded directory afterwards (must equal the nodes loaded).
    public var nodesFound: Int
}

/// Restarts of one kind: what was on disk and how the previous batond ended.
public struct DurabilityRecoveryResult: Sendable {
    public enum DiskState: String, Sendable { case logOnly = "log only", snapshot = "snapshot + log tail" }
    public enum Stop: String, Sendable { case killed = "SIGKILL", terminated = "SIGTERM" }
    public var nodes: Int
    public var diskState: DiskState
    public var stop: Stop
    public var samples: [DurabilityRecoverySample]

    public var medianReadyNanoseconds: UInt64 { median(samples.map(\.readyNanoseconds)) }
    public var medianResidentBytes: UInt64 { median(samples.map(\.residentBytes)) }
    public var medianPeakResidentBytes: UInt64 { median(samples.map(\.peakResidentBytes)) }
}

/// A snapshot taken with `nodes` persistent nodes in the tree, and what a client doing gets saw.
public struct DurabilitySnapshotResult: Sendable {
    public var nodes: Int
    /// batond's own figure: how long the loop stood still taking the snapshot ("loop_stall_microseconds").
    public var stallMicroseconds: UInt64
    /// Serializing and writing on the background thread ("snapshot finished" milliseconds), and the file's bytes.
    public var writeMilliseconds: UInt64
    public var snapshotBytes: Int
    /// Gets one at a time on another connection: before the snapshot, and overlapping it (from the
    /// first create that could trigger it to batond logging it finished).
    public var baseline: LatencySummary
    public var during: LatencySummary
}

/// Everything measured on one data set of `nodes` persistent nodes.
public struct DurabilityDatasetResult: Sendable {
    public var nodes: Int
    public var loadSeconds: Double
    /// VmRSS of the batond that created the nodes, after the load.
    public var liveResidentBytes: UInt64
    public var dataDirectoryBytes: UInt64
    public var recoveries: [DurabilityRecoveryResult]
    public var snapshot: DurabilitySnapshotResult
}

/// Snapshots never due: every restart replays the whole log.
let logOnlyArguments = ["--snapshot-every-records", "1000000000", "--snapshot-every-log-bytes", "1099511627776"]

/// Loads `nodes` persistent nodes into a fresh `--fsync batch` batond with snapshots off, then:
/// restarts after SIGKILL and after SIGTERM (log only); takes one snapshot while a client does gets
/// (the threshold set just above the log's records, then crossed); restarts after SIGKILL again
/// (snapshot plus a short log tail). Each kind of restart `repetitions` times.
public func runDurabilityDataset(executable: String, nodes: Int, repetitions: Int,
                                 perDirectory: Int = 1_000) throws(BenchError) -> DurabilityDatasetResult {
    precondition(nodes > 0 && repetitions > 0)
    let daemon = try DurabilityDaemon(executable: executable, storage: .fsyncBatch)
    let directory = "/durability/tree"
    try daemon.start(logOnlyArguments)
    let load = try loadPersistentNodes(endpoint: daemon.endpoint, count: nodes, directory: directory, perDirectory: perDirectory)
    MonotonicClock.sleep(microseconds: 200_000)
    let live = daemon.processID.flatMap(residentBytes) ?? 0
    daemon.kill()
    let dataBytes = directoryBytes(daemon.dataDirectory)

    func restart(_ arguments: [String]) throws(BenchError) -> DurabilityRecoverySample {
        let ready = try daemon.start(arguments)
        let processID = daemon.processID ?? 0
        let resident = residentBytes(processID) ?? 0
        let peak = peakResidentBytes(processID) ?? 0
        let replayed = daemon.logValues(message: "namespace recovered", key: "records_replayed").last.flatMap { Int($0) } ?? -1
        let found = try countLoadedNodes(endpoint: daemon.endpoint, directory: directory)
        return DurabilityRecoverySample(readyNanoseconds: ready, residentBytes: resident, peakResidentBytes: peak,
                                        recordsReplayed: replayed, nodesFound: found)
    }

    var killed = DurabilityRecoveryResult(nodes: load.nodes, diskState: .logOnly, stop: .killed, samples: [])
    for repetition in 0..<repetitions {
        killed.samples.append(try restart(logOnlyArguments))
        // The last one stops gracefully, so that the next restarts follow a SIGTERM.
        if repetition == repetitions - 1 { try daemon.stop() } else { daemon.kill() }
    }
    var terminated = DurabilityRecoveryResult(nodes: load.nodes, diskState: .logOnly, stop: .terminated, samples: [])
    for _ in 0..<repetitions {
        terminated.samples.append(try restart(logOnlyArguments))
        try daemon.stop()
    }

    let records = terminated.samples.last?.recordsReplayed ?? 0
    let snapshotArguments = ["--snapshot-every-records", "\(records + 50)", "--snapshot-every-log-bytes", "1099511627776"]
    try daemon.start(snapshotArguments)
    let snapshot = try measureSnapshot(daemon, nodes: load.nodes, probePath: "\(directory)/d0/n0", triggerDirectory: "/durability/trigger")

    var fromSnapshot = DurabilityRecoveryResult(nodes: load.nodes, diskState: .snapshot, stop: .killed, samples: [])
    for _ in 0..<repetitions {
        daemon.kill()
        fromSnapshot.samples.append(try restart(snapshotArguments))
    }
    daemon.kill()
    return DurabilityDatasetResult(nodes: load.nodes, loadSeconds: load.seconds, liveResidentBytes: live,
                                   dataDirectoryBytes: dataBytes, recoveries: [killed, terminated, fromSnapshot],
                                   snapshot: snapshot)
}

/// With batond's snapshot threshold a few records away: gets in a loop on one connection; after a
/// baseline, creates one at a time on another until batond logs "snapshot started"; the gets go on
/// until it logs "snapshot finished".
func measureSnapshot(_ daemon: DurabilityDaemon, nodes: Int, probePath: String,
                     triggerDirectory: String) throws(BenchError) -> DurabilitySnapshotResult {
    let writer = try BatonLockClient(endpoint: daemon.endpoint, sessionTimeoutMilliseconds: 10_000, clientName: "durability-trigger")
    try createParents(of: triggerDirectory + "/t", with: writer)
    let startedBefore = daemon.logCount(message: "snapshot started")
    let finishedBefore = daemon.logCount(message: "snapshot finished")
    guard startedBefore == 0 else { throw BenchError("snapshot: batond took a snapshot before the trigger") }
    let probe = try GetProbe(endpoint: daemon.endpoint, path: probePath)
    probe.start()
    // The baseline with this thread as busy as in the window below (reading the log every
    // millisecond): an idle machine answers a lone client more slowly (CPUs wake from idle).
    let baselineEnd = MonotonicClock.nanoseconds() + 300_000_000
    while MonotonicClock.nanoseconds() < baselineEnd {
        _ = daemon.logCount(message: "snapshot finished")
        MonotonicClock.sleep(microseconds: 1_000)
    }
    let windowStart = MonotonicClock.nanoseconds()
    var triggerCreates = 0
    while daemon.logCount(message: "snapshot started") == startedBefore {
        guard triggerCreates < 10_000 else {
            _ = try? probe.stop()
            throw BenchError("snapshot: no snapshot after \(triggerCreates) creates")
        }
        _ = try writer.call(.create(path: "\(triggerDirectory)/t\(triggerCreates)", data: [1], mode: .persistent))
        triggerCreates += 1
    }
    let deadline = MonotonicClock.nanoseconds() + 120_000_000_000
    while daemon.logCount(message: "snapshot finished") == finishedBefore {
        guard daemon.logCount(message: "snapshot failed") == 0, MonotonicClock.nanoseconds() < deadline else {
            _ = try? probe.stop()
            throw BenchError("snapshot: batond did not finish the snapshot; its log:\n\(daemon.log.suffix(2_000))")
        }
        MonotonicClock.sleep(microseconds: 1_000)
    }
    let windowEnd = MonotonicClock.nanoseconds()
    MonotonicClock.sleep(microseconds: 100_000)
    let samples = try probe.stop()
    var baseline = makeLatencyHistogram()
    var during = makeLatencyHistogram()
    for sample in samples {
        if sample.end <= windowStart {
            baseline.recordNanoseconds(sample.end - sample.start)
        } else if sample.start < windowEnd {
            during.recordNanoseconds(sample.end - sample.start)
        }
    }
    let stall = daemon.logValues(message: "snapshot started", key: "loop_stall_microseconds").last.flatMap { UInt64($0) } ?? 0
    let write = daemon.logValues(message: "snapshot finished", key: "milliseconds").last.flatMap { UInt64($0) } ?? 0
    let bytes = daemon.logValues(message: "snapshot finished", key: "bytes").last.flatMap { Int($0) } ?? 0
    return DurabilitySnapshotResult(nodes: nodes, stallMicroseconds: stall, writeMilliseconds: write, snapshotBytes: bytes,
                                    baseline: LatencySummary(baseline), during: LatencySummary(during))
}

/// A thread doing gets of one node, one at a time, noting when each was sent and answered.
final class GetProbe: @unchecked Sendable {
    struct Sample { var start: UInt64; var end: UInt64 }
    private let client: BatonLockClient
    private let path: String
    private let stopFlag = AtomicFlag()
    private let done = DispatchSemaphore(value: 0)
    // Written by the probe thread only, read after `done`.
    private var samples: [Sample] = []
    private var failure: BenchError?

    init(endpoint: Endpoint, path: String) throws(BenchError) {
        client = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: 10_000, clientName: "durability-probe")
        self.path = path
        guard case .data = try client.call(.get(path: path, watch: false)) else { throw BenchError("probe: get did not return data") }
    }

    func start() {
        let thread = Thread { [self] in
            samples.reserveCapacity(1 << 20)
            do throws(BenchError) {
                while !stopFlag.isSet {
                    let start = MonotonicClock.nanoseconds()
                    _ = try client.call(.get(path: path, watch: false))
                    samples.append(Sample(start: start, end: MonotonicClock.nanoseconds()))
                }
            } catch {
                failure = error
            }
            done.signal()
        }
        thread.start()
    }

    @discardableResult
    func stop() throws(BenchError) -> [Sample] {
        stopFlag.set()
        done.wait()
        if let failure { throw failure }
        return samples
    }
}

/// Bytes of the regular files under `path`.
func directoryBytes(_ path: String) -> UInt64 {
    guard let names = try? FileManager.default.subpathsOfDirectory(atPath: path) else { return 0 }
    var total: UInt64 = 0
    for name in names {
        if let attributes = try? FileManager.default.attributesOfItem(atPath: path + "/" + name),
           attributes[.type] as? FileAttributeType == .typeRegular, let size = attributes[.size] as? NSNumber {
            total += size.uint64Value
        }
    }
    return total
}

func median(_ values: [UInt64]) -> UInt64 {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}
