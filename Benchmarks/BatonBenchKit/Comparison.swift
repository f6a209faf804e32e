import Foundation
import BatonProtocol

/// Everything `compare` runs, and with what.
public struct ComparisonSettings: Sendable {
    public var targets: [Column: Target] = [:]
    /// Peer server processes (for CPU in the herd row); batond's comes from its Unix socket.
    public var processIDs: [Column: Int32] = [:]
    public var seconds = 1.0
    public var clients = 16
    public var takeoverSamples = 1
    /// Interleaved rounds of the floor and loop scenarios; each target keeps its best.
    public var rounds = 1
    /// A fresh batond for the footprint (else the one the other scenarios used).
    public var footprintEndpoint: Endpoint?
    public var herdWaiters = [10, 10_000]
    /// Peers run the herd with one thread per waiter: capped here (stated in the table).
    public var peerHerdWaitersMax = 100
    /// Releases measured per Baton herd run.
    public var herdReleases = 1_000
    public var namespaceDepths = [1, 64]
    public var footprintNodes = 1_000_000
    public var footprintSessions = 10_000
    public var floorSocketPath = "/tmp/baton-bench-floor-\(getpid()).sock"
    public var floorTCPPort: UInt16 = 17_101
    public var options = ClientOptions()
    public var executable = selfExecutable()
    public init() {}
}

public struct ComparisonReport: Sendable {
    public var table: String
    public var notes: [String]
}

func progress(_ text: String) {
    FileHandle.standardError.write(Data(("baton-bench: " + text + "\n").utf8))
}

/// Runs every scenario against every configured target; a target that fails a scenario gets
/// "failed" in that cell and the error in the notes, and the run goes on.
public func runComparison(_ settings: ComparisonSettings) -> ComparisonReport {
    raiseDescriptorLimit()
    var notes: [String] = []
    let columns = Column.allCases.filter { settings.targets[$0] != nil }
    let run = uniqueSuffix()
    var batonProcessID: Int32?
    if case .baton(let endpoint)? = settings.targets[.batonUnix] ?? settings.targets[.batonTCP],
       case .unix = endpoint, let socket = try? BlockingSocket.connect(endpoint) {
        batonProcessID = socket.peerProcessID
    }
    if let batonProcessID {
        if let limit = descriptorLimit(processID: batonProcessID), limit < UInt64((settings.herdWaiters.max() ?? 0) + 64) {
            notes.append("batond's open-file limit is \(limit): too low for \(settings.herdWaiters.max() ?? 0) waiters")
        }
    }
    func processID(_ column: Column) -> Int32? { column.isBaton ? batonProcessID : settings.processIDs[column] }
    func attempt<T>(_ column: Column, _ scenario: String, _ body: () throws(BenchError) -> T) -> T? {
        progress("\(scenario) on \(column.title)")
        do { return try body() } catch {
            notes.append("\(scenario) on \(column.title) failed: \(error)")
            return nil
        }
    }

    var rows: [TableRow] = []

    // 8 and 1-3: the floor and the loops run in interleaved rounds (every target once per round), and
    // each target keeps its best round, so a noisy moment on a shared machine does not fall on one
    // system alone.
    var floorBest: [Column: FloorResult] = [:]
    var loopBest: [LoopScenario: [Column: LoopResult]] = [:]
    let floorEndpoints = [(Column.batonUnix, Endpoint.unix(path: settings.floorSocketPath)),
                          (Column.batonTCP, Endpoint.tcp(host: "127.0.0.1", port: settings.floorTCPPort))]
    let roundSeconds = settings.seconds / Double(settings.rounds)
    for round in 0..<settings.rounds {
        for (column, endpoint) in floorEndpoints {
            if let result = attempt(column, "floor (round \(round + 1))", { () throws(BenchError) in
                try runFloor(endpoint, seconds: roundSeconds, executable: settings.executable)
            }), result.latency.p50 < floorBest[column]?.latency.p50 ?? .max {
                floorBest[column] = result
            }
        }
        for scenario in LoopScenario.allCases {
            for column in columns {
                if let result = attempt(column, "\(scenario) (round \(round + 1))", { () throws(BenchError) in
                    try runLoop(scenario, target: settings.targets[column]!, clients: settings.clients, seconds: roundSeconds,
                                options: settings.options, lockPrefix: "/bench/\(scenario)-\(run)-\(column.rawValue)")
                }) {
                    if result.overlaps > 0 { notes.append("\(scenario) on \(column.title): \(result.overlaps) overlapping holds") }
                    if result.pairsPerSecond > loopBest[scenario]?[column]?.pairsPerSecond ?? -1 {
                        loopBest[scenario, default: [:]][column] = result
                    }
                }
            }
        }
    }
    var floorRow = TableRow("8. floor: bare round trip of a \(floorFrameBytes)-byte frame, p50 µs (round trips/s)", higherIsBetter: nil)
    var floorNanoseconds: [Column: UInt64] = [:]
    for (column, result) in floorBest {
        floorRow.cells[column] = TableCell("\(formatMicroseconds(result.latency.p50)) (\(formatCount(result.roundTripsPerSecond))/s)")
        floorNanoseconds[column] = result.latency.p50
    }
    for column in [Column.redis, .zookeeper, .etcd] where settings.targets[column] != nil {
        floorRow.cells[column] = TableCell("TCP: \(floorRow.cells[.batonTCP]?.text ?? "—")")
    }

    var uncontendedRate = TableRow("1. uncontended: acquire+release pairs/s, 1 client", higherIsBetter: true)
    var uncontendedLatency = TableRow("1. uncontended: pair p50 / p99 / p999 µs", higherIsBetter: false)
    var uncontendedFloor = TableRow("1. uncontended: pair p50 ÷ two bare round trips", higherIsBetter: nil)
    var contendedRate = TableRow("2. contended: grants/s, \(settings.clients) clients on 1 lock", higherIsBetter: true)
    var contendedWait = TableRow("2. contended: wait p50 / p99 µs", higherIsBetter: false)
    var contendedFairness = TableRow("2. contended: grants per client fewest..most (most/fewest)", higherIsBetter: false)
    var spreadRate = TableRow("3. spread: pairs/s in total, \(settings.clients) clients on \(settings.clients) locks", higherIsBetter: true)
    for column in columns {
        if let result = loopBest[.uncontended]?[column] {
            uncontendedRate.cells[column] = TableCell(formatCount(result.pairsPerSecond), value: result.pairsPerSecond)
            uncontendedLatency.cells[column] = TableCell(
                "\(formatMicroseconds(result.latency.p50)) / \(formatMicroseconds(result.latency.p99)) / \(formatMicroseconds(result.latency.p999))",
                value: Double(result.latency.p50))
            if column.isBaton, let floor = floorNanoseconds[column], floor > 0 {
                uncontendedFloor.cells[column] = TableCell(String(format: "%.2f", Double(result.latency.p50) / Double(2 * floor)))
            }
        }
        if let result = loopBest[.contended]?[column] {
            contendedRate.cells[column] = TableCell(formatCount(result.pairsPerSecond), value: result.pairsPerSecond)
            contendedWait.cells[column] = TableCell("\(formatMicroseconds(result.latency.p50)) / \(formatMicroseconds(result.latency.p99))",
                                                    value: Double(result.latency.p99))
            let spreadRatio = result.fewestGrants > 0 ? Double(result.mostGrants) / Double(result.fewestGrants) : .infinity
            contendedFairness.cells[column] = TableCell("\(result.fewestGrants)..\(result.mostGrants) (\(String(format: "%.2f", spreadRatio)))",
                                                        value: spreadRatio)
        }
        if let result = loopBest[.spread]?[column] {
            spreadRate.cells[column] = TableCell(formatCount(result.pairsPerSecond), value: result.pairsPerSecond)
        }
    }
    rows += [uncontendedRate, uncontendedLatency, uncontendedFloor, contendedRate, contendedWait, contendedFairness, spreadRate]

    // 4. Takeover.
    var takeover = TableRow("4. takeover: SIGKILL of the holder's process to a waiter holding, ms (median of \(settings.takeoverSamples))",
                            higherIsBetter: false)
    for column in columns {
        if let result = attempt(column, "takeover", { () throws(BenchError) in
            try runTakeover(target: settings.targets[column]!, samples: settings.takeoverSamples, options: settings.options,
                            lockPrefix: "/bench/takeover-\(run)-\(column.rawValue)", executable: settings.executable)
        }) {
            takeover.cells[column] = TableCell("\(formatMilliseconds(result.medianNanoseconds)) (\(result.holderSetting))",
                                               value: Double(result.medianNanoseconds))
        }
    }
    rows.append(takeover)

    // 5. Herd. Setting up 10,000 sessions takes a while: long session timeouts keep the first ones alive.
    var herdOptions = settings.options
    herdOptions.batonSessionTimeoutMilliseconds = 300_000
    for waiters in settings.herdWaiters {
        var handoff = TableRow("5. herd, \(waiters) waiters: release to next holder p50 / p99 µs", higherIsBetter: false)
        var cpu = TableRow("5. herd, \(waiters) waiters: server CPU per release, µs", higherIsBetter: false)
        var woken = TableRow("5. herd, \(waiters) waiters: clients woken per release (Redis: failed SET NX tries; ZooKeeper: watch events)", higherIsBetter: false)
        for column in columns {
            let target = settings.targets[column]!
            let lock = "/bench/herd-\(run)-\(column.rawValue)-\(waiters)"
            let result: HerdResult?
            var label = ""
            if case .baton(let endpoint) = target {
                result = attempt(column, "herd \(waiters)", { () throws(BenchError) in
                    try runBatonHerd(endpoint: endpoint, waiters: waiters, releases: settings.herdReleases,
                                     serverProcessID: processID(column), options: herdOptions, lock: lock)
                })
            } else {
                let peerWaiters = min(waiters, settings.peerHerdWaitersMax)
                if peerWaiters < waiters { label = " [\(peerWaiters) waiters]" }
                result = attempt(column, "herd \(peerWaiters)", { () throws(BenchError) in
                    try runThreadedHerd(target: target, waiters: peerWaiters, serverProcessID: processID(column),
                                        options: settings.options, lock: lock)
                })
            }
            guard let result else { continue }
            handoff.cells[column] = TableCell("\(formatMicroseconds(result.handoff.p50)) / \(formatMicroseconds(result.handoff.p99))\(label)",
                                              value: Double(result.handoff.p50))
            if let nanoseconds = result.serverCPUNanosecondsPerRelease {
                cpu.cells[column] = TableCell(formatMicroseconds(UInt64(max(nanoseconds, 0))) + label, value: nanoseconds)
            }
            if let count = result.wokenPerRelease {
                woken.cells[column] = TableCell(String(format: "%.2f", count) + label, value: count)
            } else {
                woken.cells[column] = TableCell("not visible to the client" + label)
            }
        }
        rows += [handoff, cpu, woken]
    }

    // 6. Namespace: Baton, with Redis GET/SET as the reference.
    var namespaceRows: [String: [Int: TableRow]] = [:]
    for operation in namespaceOperations {
        for depth in settings.namespaceDepths {
            let label = depth == 1 ? "one at a time" : "pipelined \(depth) deep"
            let name = operation == "create" ? "create (Redis: SET NX of a new key)" : operation
            namespaceRows[operation, default: [:]][depth] = TableRow("6. namespace: \(name) ops/s, \(label)", higherIsBetter: true)
        }
    }
    for column in columns {
        let result: NamespaceResult?
        switch settings.targets[column]! {
        case .baton(let endpoint):
            result = attempt(column, "namespace", { () throws(BenchError) in
                try runBatonNamespace(endpoint: endpoint, seconds: settings.seconds / 2, depths: settings.namespaceDepths,
                                      options: settings.options, directory: "/bench/namespace-\(run)-\(column.rawValue)")
            })
        case .redis(let host, let port):
            result = attempt(column, "namespace", { () throws(BenchError) in
                try runRedisNamespace(host: host, port: port, seconds: settings.seconds / 2, depths: settings.namespaceDepths,
                                      options: settings.options, prefix: "/bench/namespace-\(run)")
            })
        default: result = nil
        }
        guard let result else { continue }
        for (operation, byDepth) in result.operationsPerSecond {
            for (depth, rate) in byDepth { namespaceRows[operation]?[depth]?.cells[column] = TableCell(formatCount(rate), value: rate) }
        }
    }
    for operation in namespaceOperations {
        for depth in settings.namespaceDepths { rows.append(namespaceRows[operation]![depth]!) }
    }

    // 7. Footprint of batond (the Unix endpoint gives its process).
    var footprint = TableRow("7. footprint: batond resident memory idle / \(formatCount(Double(settings.footprintNodes))) nodes / +\(formatCount(Double(settings.footprintSessions))) sessions",
                             higherIsBetter: nil)
    var footprintTarget: (Endpoint, Int32)?
    if let endpoint = settings.footprintEndpoint, let processID = try? BlockingSocket.connect(endpoint).peerProcessID {
        footprintTarget = (endpoint, processID)
    } else if case .baton(let endpoint)? = settings.targets[.batonUnix], let batonProcessID {
        footprintTarget = (endpoint, batonProcessID)
    }
    if let (endpoint, footprintProcessID) = footprintTarget {
        if let result = attempt(.batonUnix, "footprint", { () throws(BenchError) in
            try runBatonFootprint(endpoint: endpoint, serverProcessID: footprintProcessID, nodes: settings.footprintNodes,
                                  sessions: settings.footprintSessions, options: settings.options, directory: "/bench/footprint-\(run)")
        }) {
            footprint.cells[.batonUnix] = TableCell("\(formatBytes(result.baselineBytes)) / \(formatBytes(result.withNodesBytes)) / \(formatBytes(result.withSessionsBytes))")
        }
    }
    for column in [Column.redis, .zookeeper, .etcd] where settings.targets[column] != nil {
        if let processID = settings.processIDs[column], let bytes = residentBytes(processID) {
            footprint.cells[column] = TableCell("\(formatBytes(bytes)) after the run")
        }
    }
    rows.append(footprint)
    rows.append(floorRow)
    return ComparisonReport(table: renderTable(rows, columns: columns), notes: notes)
}
