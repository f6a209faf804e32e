import Foundation
import BatonProtocol

/// Issue 9's rows: Baton's sidecars over a ZooKeeper ensemble, the direct ZooKeeper recipe against
/// the same ensemble, and an etcd cluster, each with three members (sidecars or servers), clients
/// spread over them (client i on member i mod 3).
public struct MultiHostSettings: Sendable {
    public var comparison = ComparisonSettings()
    /// The ensemble's members ("127.0.0.1:PORT"), for `mntr` (4lw) request counts.
    public var zookeeperMembers: [String] = []
    /// Starting a sidecar to kill: batond's path and its `--store` and session timeout.
    public var batondPath: String?
    public var store: String?
    public var sidecarSessionTimeoutMilliseconds: Int32 = 4_000
    public var sidecarDeathSamples = 1
    public init() {}
}

public struct MultiHostReport: Sendable {
    public var table: String
    public var notes: [String]
}

/// ZooKeeper's count of client packets a member received (`mntr`, `zk_packets_received`), summed over members.
public func zookeeperPacketsReceived(_ members: [String]) throws(BenchError) -> UInt64 {
    var total: UInt64 = 0
    for member in members {
        guard case .tcp(let host, let port)? = Endpoint.parseTCP(member) else { throw BenchError("not HOST:PORT: \(member)") }
        let socket = try BlockingSocket.connect(.tcp(host: host, port: port))
        try socket.send(Array("mntr".utf8))
        var text = ""
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(socket.descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            text += String(decoding: chunk[0..<count], as: UTF8.self)
        }
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("zk_packets_received") }),
              let value = line.split(separator: "\t").last.flatMap({ UInt64($0.trimmingCharacters(in: .whitespaces)) }) else {
            throw BenchError("zookeeper \(member): no zk_packets_received in mntr (is 4lw.commands.whitelist=mntr set?): \(text.prefix(120))")
        }
        total += value
    }
    return total
}

/// ZooKeeper requests (client packets, summed over the ensemble) per uncontended acquire+release pair.
public func zookeeperRequestsPerPair(targets: [Target], members: [String], seconds: Double, options: ClientOptions,
                                     lock: String) throws(BenchError) -> (perPair: Double, pairs: Int) {
    // Warm up (the lock's parent nodes, the sidecar's caches) outside the count.
    _ = try runLoop(.uncontended, targets: targets, clients: 1, seconds: 0.05, options: options, lockPrefix: lock)
    let before = try zookeeperPacketsReceived(members)
    let result = try runLoop(.uncontended, targets: targets, clients: 1, seconds: seconds, options: options, lockPrefix: lock)
    let after = try zookeeperPacketsReceived(members)
    // A session's setup and close (connect, close) are counted too: a few packets over thousands of pairs.
    return (Double(after - before) / Double(max(result.pairs, 1)), result.pairs)
}

/// Takeover after a sidecar's death: a fresh sidecar is started on the ensemble, a client holds the
/// lock through it, a waiter waits on another sidecar; the sidecar is SIGKILLed and the time until the
/// waiter holds is measured. The dead sidecar's ephemeral nodes go only when ZooKeeper expires its
/// session, so this is bounded below by the sidecar's ZooKeeper session timeout.
public func runSidecarDeathTakeover(batondPath: String, store: String, sessionTimeoutMilliseconds: Int32,
                                    waiterTarget: Target, samples: Int, options: ClientOptions,
                                    lockPrefix: String) throws(BenchError) -> TakeoverResult {
    var results: [UInt64] = []
    for sample in 0..<samples {
        let lock = "\(lockPrefix)-\(sample)"
        let socketPath = "/tmp/baton-bench-sidecar-\(getpid())-\(sample).sock"
        unlink(socketPath)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: batondPath)
        process.arguments = ["--socket", socketPath, "--store", store, "--zookeeper-session-timeout-ms", String(sessionTimeoutMilliseconds),
                             "--log-level", "error"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { throw BenchError("cannot start sidecar \(batondPath): \(error)") }
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            unlink(socketPath)
        }
        // The sidecar answers once its ZooKeeper session is up.
        var holder: BatonLockClient?
        let ready = MonotonicClock.nanoseconds() + 30_000_000_000
        while holder == nil && MonotonicClock.nanoseconds() < ready {
            if let client = try? BatonLockClient(endpoint: .unix(path: socketPath), sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                                 clientName: "sidecar-death-holder"),
               (try? client.acquire(lock)) != nil {
                holder = client
            } else {
                MonotonicClock.sleep(microseconds: 100_000)
            }
        }
        guard let holder else { throw BenchError("sidecar on \(store) did not grant a lock within 30 s") }
        let granted = startWaiter(try makeClient(waiterTarget, options: options), lock: lock).granted
        MonotonicClock.sleep(microseconds: 200_000)
        let killed = MonotonicClock.nanoseconds()
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        withExtendedLifetime(holder) {}
        let deadline = killed + 120_000_000_000
        while granted.elements.isEmpty && MonotonicClock.nanoseconds() < deadline { MonotonicClock.sleep(microseconds: 1_000) }
        guard let outcome = granted.elements.first else { throw BenchError("waiter not granted 120 s after the sidecar's death") }
        results.append(try outcome.get() - killed)
    }
    return TakeoverResult(samplesNanoseconds: results, holderSetting: "sidecar's ZooKeeper session \(sessionTimeoutMilliseconds) ms")
}

public func runMultiHostComparison(_ settings: MultiHostSettings) -> MultiHostReport {
    let context = ComparisonRun(settings.comparison)
    let columns = context.columns(Column.multiHostColumns)
    let best = context.rounds(columns, floors: false)
    var rows = context.loopRows(best, columns).filter { !$0.scenario.contains("÷ two bare round trips") }
    rows.append(context.takeoverRow(columns))

    var sidecarDeath = TableRow("4. takeover: SIGKILL of the holder's sidecar to a waiter on another sidecar holding, ms (median of \(settings.sidecarDeathSamples))",
                                higherIsBetter: false)
    if let batondPath = settings.batondPath, let store = settings.store, let waiter = settings.comparison.targets[.batonSidecars]?.last {
        if let result = context.attempt(.batonSidecars, "sidecar death", { () throws(BenchError) in
            try runSidecarDeathTakeover(batondPath: batondPath, store: store, sessionTimeoutMilliseconds: settings.sidecarSessionTimeoutMilliseconds,
                                        waiterTarget: waiter, samples: settings.sidecarDeathSamples, options: settings.comparison.options,
                                        lockPrefix: "/bench/sidecar-death-\(context.run)")
        }) {
            sidecarDeath.cells[.batonSidecars] = TableCell("\(formatMilliseconds(result.medianNanoseconds)) (\(result.holderSetting))",
                                                           value: Double(result.medianNanoseconds))
        }
    }
    rows.append(sidecarDeath)

    var requests = TableRow("10. ZooKeeper requests per uncontended acquire+release pair (mntr zk_packets_received, all members)",
                            higherIsBetter: false)
    if !settings.zookeeperMembers.isEmpty {
        for column in [Column.batonSidecars, .zookeeperEnsemble] where settings.comparison.targets[column] != nil {
            if let result = context.attempt(column, "ZooKeeper requests per pair", { () throws(BenchError) in
                try zookeeperRequestsPerPair(targets: [context.target(column)], members: settings.zookeeperMembers,
                                             seconds: max(settings.comparison.seconds / 3, 0.2), options: settings.comparison.options,
                                             lock: "/bench/zk-requests-\(context.run)-\(column.rawValue)")
            }) {
                requests.cells[column] = TableCell(String(format: "%.2f", result.perPair), value: result.perPair)
            }
        }
    }
    rows.append(requests)
    return MultiHostReport(table: renderTable(rows, columns: columns), notes: context.notes)
}
