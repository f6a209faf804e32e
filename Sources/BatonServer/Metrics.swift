import BatonEngine
import BatonProtocol
import BatonStore
import Prometheus
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Counters the loop bumps as it works: plain integers, confined to the loop thread, so the request
/// path pays an add, not an atomic. A scrape copies them into the Prometheus registry.
struct ServerCounters {
    /// Requests decoded, by opcode byte.
    var requestsByOpcode = [UInt64](repeating: 0, count: 256)
    /// Error replies sent, by error code.
    var errorsByCode = [UInt64](repeating: 0, count: ServerCounters.errorCodeSlots)
    var bytesRead: UInt64 = 0
    var bytesWritten: UInt64 = 0
    /// Whole client frames taken off the wire, decodable or not.
    var framesReceived: UInt64 = 0
    /// Server frames encoded for clients: replies and events.
    var framesSent: UInt64 = 0
    var eventsSent: UInt64 = 0
    var connectionsAccepted: UInt64 = 0
    /// Accepted, then turned away at once (connection limit).
    var connectionsRefused: UInt64 = 0
    var slowReaderDisconnects: UInt64 = 0
    var snapshotsWritten: UInt64 = 0
    var snapshotFailures: UInt64 = 0
    var backupsStarted: UInt64 = 0
    var backupsWritten: UInt64 = 0
    var backupFailures: UInt64 = 0
    /// Times the log could not be written and writes were refused until a retry succeeded.
    var storageFailures: UInt64 = 0
    /// How long the loop stood still copying the state for the last snapshot.
    var lastSnapshotStallMicroseconds: UInt64 = 0
    var metricsRequests: UInt64 = 0
    /// SIGHUP reloads of the access rules that succeeded, and those that kept the old rules.
    var accessRulesReloads: UInt64 = 0
    var accessRulesReloadFailures: UInt64 = 0
    /// From a request's arrival to its reply leaving for the socket, the commit barrier included
    /// (acquires excepted: they wait for their lock).
    var requestServiceTime = LatencyHistogram(boundsNanoseconds: LatencyHistogram.serviceBounds)
    /// From an acquire's arrival to its grant.
    var acquireWait = LatencyHistogram(boundsNanoseconds: LatencyHistogram.waitBounds)

    static let errorCodeSlots = Int(ErrorCode.allCases.map(\.rawValue).max()!) + 1

    mutating func countError(_ code: ErrorCode) {
        errorsByCode[Int(code.rawValue)] += 1
    }
}

/// Everything one scrape reports, gathered on the loop thread.
struct MetricsSample {
    var counters = ServerCounters()
    var unixConnections = 0
    var tcpConnections = 0
    /// nil with a stand-in engine.
    var engine: EngineStatistics?
    /// nil when the namespace is kept in memory only.
    var store: StoreMetrics?
    /// The log cannot be written right now.
    var storageFailing = false
    var residentMemoryBytes: UInt64?
}

/// The Prometheus registry of one server (swift-prometheus: it owns the names, types and the text
/// exposition format 0.0.4). Counters are mirrored from `ServerCounters` by their increase since the
/// previous scrape, so the hot path never touches the registry. Loop thread only.
final class MetricsRegistry {
    let registry = PrometheusCollectorRegistry()

    /// A Prometheus counter fed from a running total.
    private final class MirroredCounter {
        let counter: Counter
        private var exported: UInt64 = 0
        init(_ counter: Counter) { self.counter = counter }
        func update(to total: UInt64) {
            guard total > exported else { return }
            counter.increment(by: Int64(clamping: total - exported))
            exported = total
        }
    }

    private let requests: [(opcode: Opcode, counter: MirroredCounter)]
    private let errors: [(code: ErrorCode, counter: MirroredCounter)]
    private let bytesRead, bytesWritten, framesReceived, framesSent, eventsSent: MirroredCounter
    private let connectionsAccepted, connectionsRefused, slowReaderDisconnects, metricsRequests: MirroredCounter
    private let backupsWritten, backupFailures: MirroredCounter
    private let unixConnections, tcpConnections: Gauge
    private let sessions, detachedSessions, nodes, watches: Gauge
    private var lockHolders, lockWaiters: Gauge?
    private let authenticationSuccesses, authenticationFailures: MirroredCounter
    private let accessRulesReloads, accessRulesReloadFailures: MirroredCounter
    /// `baton_access_denied_total{op}`, registered per opcode at its first denial.
    private var accessDenied: [Opcode: MirroredCounter] = [:]
    /// The write-ahead log and snapshots: registered only when the namespace is durable.
    private let logAppends, logFsyncs, logBytes, snapshotsWritten, snapshotFailures, storageFailures: MirroredCounter?
    private let lastSnapshotStall, storageFailing: Gauge?
    private let residentMemory: Gauge

    init(includesStore: Bool, revision: String = "unknown") {
        let registry = self.registry
        func counter(_ name: String, _ unit: String, _ help: String, labels: [(String, String)] = []) -> MirroredCounter {
            let descriptor = MetricNameDescriptor(namespace: "baton", metricName: name, unitName: unit, helpText: help)
            return MirroredCounter(registry.makeCounter(descriptor: descriptor, labels: labels))
        }
        func gauge(_ name: String, _ unit: String, _ help: String, labels: [(String, String)] = []) -> Gauge {
            let descriptor = MetricNameDescriptor(namespace: "baton", metricName: name, unitName: unit, helpText: help)
            return registry.makeGauge(descriptor: descriptor, labels: labels)
        }
        // Every opcode and error code from the start: a series that appears late breaks rate().
        requests = Opcode.allCases.map { opcode in
            (opcode, counter("requests", "total", "Requests received, by opcode.", labels: [("opcode", opcode.name)]))
        }
        errors = ErrorCode.allCases.filter { $0 != .ok }.map { code in
            (code, counter("errors", "total", "Error replies sent, by error code.", labels: [("code", code.name)]))
        }
        bytesRead = counter("network_read_bytes", "total", "Bytes read from client connections.")
        bytesWritten = counter("network_written_bytes", "total", "Bytes written to client connections.")
        framesReceived = counter("frames_received", "total", "Client frames received.")
        framesSent = counter("frames_sent", "total", "Server frames sent: replies and events.")
        eventsSent = counter("events_sent", "total", "Events pushed to clients.")
        connectionsAccepted = counter("connections_accepted", "total", "Client connections accepted.")
        connectionsRefused = counter("connections_refused", "total", "Connections turned away at the connection limit.")
        slowReaderDisconnects = counter("slow_reader_disconnects", "total",
                                        "Connections cut because the client did not read its replies.")
        metricsRequests = counter("metrics_requests", "total", "HTTP requests to the metrics endpoint.")
        backupsWritten = counter("backups", "total", "Online backups written (baton backup).")
        backupFailures = counter("backup_failures", "total", "Online backups that could not be written.")
        unixConnections = gauge("connections", "open", "Open client connections, by transport.", labels: [("transport", "unix")])
        tcpConnections = gauge("connections", "open", "Open client connections, by transport.", labels: [("transport", "tcp")])
        sessions = gauge("sessions", "open", "Open sessions, attached or detached.")
        detachedSessions = gauge("sessions_detached", "", "Sessions kept without a connection, awaiting a resume.")
        nodes = gauge("nodes", "", "Nodes in the namespace.")
        watches = gauge("watches", "", "Watches registered by sessions.")
        // Always 1; the release and the git revision are in its labels (Prometheus' build_info convention).
        gauge("build_info", "", "The release of this batond.",
              labels: [("version", BatonVersion.release), ("revision", revision)]).set(Int64(1))
        authenticationSuccesses = counter("authentication_successes", "total", "TCP authentications that succeeded.")
        authenticationFailures = counter("authentication_failures", "total", "TCP authentications with a wrong token.")
        accessRulesReloads = counter("access_rules_reloads", "total", "Access rule files reloaded on SIGHUP.")
        accessRulesReloadFailures = counter("access_rules_reload_failures", "total",
                                            "SIGHUP reloads of the access rules refused (the previous rules stayed).")
        if includesStore {
            logAppends = counter("log_appends", "total", "Records appended to the write-ahead log.")
            logFsyncs = counter("log_fsyncs", "total", "fsync calls on the write-ahead log and its directory.")
            logBytes = counter("log_written_bytes", "total", "Bytes written to write-ahead log segments.")
            snapshotsWritten = counter("snapshots", "total", "Snapshots written.")
            snapshotFailures = counter("snapshot_failures", "total", "Snapshots that failed.")
            lastSnapshotStall = gauge("snapshot_last_stall", "microseconds",
                                      "How long the event loop stood still copying the state for the last snapshot.")
            storageFailures = counter("storage_failures", "total",
                                      "Times the log could not be written (full disk, I/O error) and writes were refused until a retry succeeded.")
            storageFailing = gauge("storage_failing", "", "1 while the log cannot be written and writes are refused.")
        } else {
            (logAppends, logFsyncs, logBytes, snapshotsWritten, snapshotFailures, storageFailures) = (nil, nil, nil, nil, nil, nil)
            (lastSnapshotStall, storageFailing) = (nil, nil)
        }
        residentMemory = gauge("process_resident_memory", "bytes", "Resident memory of the daemon process.")
    }

    /// Updates every metric from `sample` and renders the registry.
    func exposition(_ sample: MetricsSample) -> [UInt8] {
        let counters = sample.counters
        for (opcode, counter) in requests { counter.update(to: counters.requestsByOpcode[Int(opcode.rawValue)]) }
        for (code, counter) in errors { counter.update(to: counters.errorsByCode[Int(code.rawValue)]) }
        bytesRead.update(to: counters.bytesRead)
        bytesWritten.update(to: counters.bytesWritten)
        framesReceived.update(to: counters.framesReceived)
        framesSent.update(to: counters.framesSent)
        eventsSent.update(to: counters.eventsSent)
        connectionsAccepted.update(to: counters.connectionsAccepted)
        connectionsRefused.update(to: counters.connectionsRefused)
        slowReaderDisconnects.update(to: counters.slowReaderDisconnects)
        metricsRequests.update(to: counters.metricsRequests)
        accessRulesReloads.update(to: counters.accessRulesReloads)
        accessRulesReloadFailures.update(to: counters.accessRulesReloadFailures)
        backupsWritten.update(to: counters.backupsWritten)
        backupFailures.update(to: counters.backupFailures)
        unixConnections.set(Int64(sample.unixConnections))
        tcpConnections.set(Int64(sample.tcpConnections))
        if let engine = sample.engine {
            sessions.set(Int64(engine.sessions))
            detachedSessions.set(Int64(engine.detachedSessions))
            nodes.set(Int64(engine.nodes))
            watches.set(Int64(engine.watches))
            authenticationSuccesses.update(to: engine.authenticationSuccesses)
            authenticationFailures.update(to: engine.authenticationFailures)
            for (opcode, total) in engine.accessDenied {
                let counter = accessDenied[opcode] ?? MirroredCounter(registry.makeCounter(
                    descriptor: MetricNameDescriptor(namespace: "baton", metricName: "access_denied", unitName: "total",
                                                     helpText: "Requests refused by the access rules, by opcode."),
                    labels: [("op", opcode.name)]))
                accessDenied[opcode] = counter
                counter.update(to: total)
            }
            // Registered only once the lock layer reports them (EngineStatistics.lockHolders).
            if let holders = engine.lockHolders {
                lockHolders = lockHolders ?? lockGauge("lock_holders", "Holders over all locks.")
                lockHolders?.set(Int64(holders))
            }
            if let waiters = engine.lockWaiters {
                lockWaiters = lockWaiters ?? lockGauge("lock_waiters", "Waiters over all locks.")
                lockWaiters?.set(Int64(waiters))
            }
        }
        if let store = sample.store {
            logAppends?.update(to: store.recordsAppended)
            logFsyncs?.update(to: store.fsyncCount)
            logBytes?.update(to: store.bytesWritten)
        }
        snapshotsWritten?.update(to: counters.snapshotsWritten)
        snapshotFailures?.update(to: counters.snapshotFailures)
        storageFailures?.update(to: counters.storageFailures)
        storageFailing?.set(Int64(sample.storageFailing ? 1 : 0))
        lastSnapshotStall?.set(Int64(clamping: counters.lastSnapshotStallMicroseconds))
        if let resident = sample.residentMemoryBytes { residentMemory.set(Int64(clamping: resident)) }
        // Histograms are kept by the loop without locks (ServerCounters) and rendered here, after the registry's families.
        var histograms = counters.requestServiceTime.exposition(
            name: "baton_request_service_seconds",
            help: "From a request's arrival to its reply leaving for the socket, log commit included (acquire excluded).")
        histograms += counters.acquireWait.exposition(
            name: "baton_acquire_wait_seconds", help: "From an acquire's arrival to its grant.")
        if let store = sample.store {
            histograms += store.fsyncDurations.exposition(
                name: "baton_log_fsync_seconds", help: "Duration of each fsync of the write-ahead log or the data directory.")
        }
        return registry.emitToBuffer() + Array(histograms.utf8)
    }

    private func lockGauge(_ name: String, _ help: String) -> Gauge {
        registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "baton", metricName: name, unitName: "", helpText: help))
    }

    /// Resident set size from /proc/self/statm (Linux); nil where there is none.
    static func residentMemoryBytes() -> UInt64? {
        #if os(Linux)
        let descriptor = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        // "size resident shared ...", in pages.
        let fields = buffer[0..<count].split(separator: UInt8(ascii: " "))
        guard fields.count >= 2, let pages = UInt64(String(decoding: fields[1], as: UTF8.self)) else { return nil }
        return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
        #else
        return nil
        #endif
    }
}

extension Opcode {
    /// The case name, as in Proto/PROTOCOL.md §6.
    var name: String { String(describing: self) }
}
