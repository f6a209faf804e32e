import Foundation
import BatonProtocol

/// Everything `compare` runs, and with what.
public struct ComparisonSettings: Sendable {
    /// Where each column's clients connect; several targets (sidecars, members) share the clients out.
    public var targets: [Column: [Target]] = [:]
    /// Server processes whose CPU each column's rows count (batond's comes from its Unix socket when not given).
    public var processIDs: [Column: [Int32]] = [:]
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
    public var namespaceModes: [NamespaceMode] = [.oneAtATime, .pipelined(64), .clients(16)]
    /// The bare libuv echo server (nil: not measured).
    public var libuvEcho: EchoProcess?
    /// Measure the Swift client library (`BlockingClient`, `BatonClient`) beside the raw client.
    public var libraryClients = true
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
    /// The namespace write table (Baton's durability settings against Redis's).
    public var writeTable: String
    /// Each target of issue 11 with the ratio this run measured.
    public var targets: [String]
    public var notes: [String]
}

/// The server CPU cell: µs per operation.
func cpuCell(_ nanoseconds: Double?) -> TableCell? {
    guard let nanoseconds else { return nil }
    return TableCell(formatMicroseconds(UInt64(max(nanoseconds, 0))), value: nanoseconds)
}

func ratioText(_ numerator: Double?, _ denominator: Double?) -> String {
    guard let numerator, let denominator, denominator > 0 else { return "not measured" }
    return formatRatio(numerator / denominator)
}

func progress(_ text: String) {
    FileHandle.standardError.write(Data(("baton-bench: " + text + "\n").utf8))
}

/// One comparison run: its settings, the server processes found, and the notes gathered.
final class ComparisonRun {
    let settings: ComparisonSettings
    let run = uniqueSuffix()
    var notes: [String] = []
    /// Server processes per column: given, or (Baton over a Unix socket) the socket's peer.
    var processIDs: [Column: [Int32]] = [:]

    init(_ settings: ComparisonSettings) {
        self.settings = settings
        raiseDescriptorLimit()
        for (column, targets) in settings.targets {
            if let given = settings.processIDs[column] { processIDs[column] = given; continue }
            var found: [Int32] = []
            for case .baton(let endpoint) in targets {
                if case .unix = endpoint, let socket = try? BlockingSocket.connect(endpoint), let peer = socket.peerProcessID {
                    found.append(peer)
                }
            }
            if !found.isEmpty { processIDs[column] = Array(Set(found)) }
        }
    }

    func columns(_ candidates: [Column]) -> [Column] { candidates.filter { settings.targets[$0] != nil } }
    func target(_ column: Column) -> Target { settings.targets[column]!.first! }
    func pids(_ column: Column) -> [Int32] { processIDs[column] ?? [] }

    func attempt<T>(_ column: Column, _ scenario: String, _ body: () throws(BenchError) -> T) -> T? {
        progress("\(scenario) on \(column.title)")
        do { return try body() } catch {
            notes.append("\(scenario) on \(column.title) failed: \(error)")
            return nil
        }
    }

    /// What the interleaved rounds measured: each target's best round.
    struct Rounds {
        var floor: [Column: FloorResult] = [:]
        var echo: [Column: FloorResult] = [:]
        var loops: [LoopScenario: [Column: LoopResult]] = [:]
        var library: [LibraryClient: LoopResult] = [:]
    }

    /// The floor, the echo and the loops run in interleaved rounds (every target once per round), and
    /// each target keeps its best round, so a noisy moment on a shared machine does not fall on one
    /// system alone. The server CPU of a loop is that of the kept round.
    func rounds(_ columns: [Column], floors: Bool) -> Rounds {
        var best = Rounds()
        let floorEndpoints = [(Column.batonUnix, Endpoint.unix(path: settings.floorSocketPath)),
                              (Column.batonTCP, Endpoint.tcp(host: "127.0.0.1", port: settings.floorTCPPort))]
        let roundSeconds = settings.seconds / Double(settings.rounds)
        for round in 0..<settings.rounds {
            if floors {
                for (column, endpoint) in floorEndpoints {
                    if let result = attempt(column, "floor (round \(round + 1))", { () throws(BenchError) in
                        try runFloor(endpoint, seconds: roundSeconds, server: .blocking(executable: settings.executable))
                    }), result.latency.p50 < best.floor[column]?.latency.p50 ?? .max {
                        best.floor[column] = result
                    }
                    guard let echo = settings.libuvEcho else { continue }
                    if let result = attempt(column, "libuv echo (round \(round + 1))", { () throws(BenchError) in
                        try runFloor(endpoint, seconds: roundSeconds, server: echo)
                    }), result.latency.p50 < best.echo[column]?.latency.p50 ?? .max {
                        best.echo[column] = result
                    }
                }
            }
            for scenario in LoopScenario.allCases {
                for column in columns {
                    if let result = attempt(column, "\(scenario) (round \(round + 1))", { () throws(BenchError) in
                        try runLoop(scenario, targets: settings.targets[column]!, clients: settings.clients, seconds: roundSeconds,
                                    options: settings.options, lockPrefix: "/bench/\(scenario)-\(run)-\(column.rawValue)-\(round)",
                                    serverProcessIDs: pids(column))
                    }) {
                        if result.overlaps > 0 { notes.append("\(scenario) on \(column.title): \(result.overlaps) overlapping holds") }
                        if result.pairsPerSecond > best.loops[scenario]?[column]?.pairsPerSecond ?? -1 {
                            best.loops[scenario, default: [:]][column] = result
                        }
                    }
                }
                // The Swift library beside the raw client, in the same round.
                if scenario == .uncontended, settings.libraryClients, case .baton(let endpoint)? = settings.targets[.batonUnix]?.first {
                    for kind in LibraryClient.allCases {
                        if let result = attempt(.batonUnix, "uncontended via \(kind.title) (round \(round + 1))", { () throws(BenchError) in
                            try runLibraryUncontended(kind, endpoint: endpoint, seconds: roundSeconds, options: settings.options,
                                                      lock: "/bench/library-\(run)-\(kind.rawValue)", serverProcessIDs: pids(.batonUnix))
                        }), result.pairsPerSecond > best.library[kind]?.pairsPerSecond ?? -1 {
                            best.library[kind] = result
                        }
                    }
                }
            }
        }
        return best
    }

    /// Rows 1-3 (rates, latency, fairness, server CPU) from the rounds.
    func loopRows(_ best: Rounds, _ columns: [Column]) -> [TableRow] {
        var uncontendedRate = TableRow("1. uncontended: acquire+release pairs/s, 1 client", higherIsBetter: true)
        var uncontendedLatency = TableRow("1. uncontended: pair p50 / p99 / p999 µs", higherIsBetter: false)
        var uncontendedFloor = TableRow("1. uncontended: pair p50 ÷ two bare round trips", higherIsBetter: nil)
        var uncontendedCPU = TableRow("1. uncontended: server CPU µs per pair", higherIsBetter: false)
        var contendedRate = TableRow("2. contended: grants/s, \(settings.clients) clients on 1 lock", higherIsBetter: true)
        var contendedWait = TableRow("2. contended: wait p50 / p99 µs", higherIsBetter: false)
        var contendedFairness = TableRow("2. contended: grants per client fewest..most (most/fewest)", higherIsBetter: false)
        var contendedCPU = TableRow("2. contended: server CPU µs per grant", higherIsBetter: false)
        var contendedClientCPU = TableRow("2. contended: clients' CPU µs per grant (the benchmark's client threads, same cores)", higherIsBetter: nil)
        var spreadRate = TableRow("3. spread: pairs/s in total, \(settings.clients) clients on \(settings.clients) locks", higherIsBetter: true)
        var spreadCPU = TableRow("3. spread: server CPU µs per pair", higherIsBetter: false)
        var spreadClientCPU = TableRow("3. spread: clients' CPU µs per pair (the benchmark's client threads, same cores)", higherIsBetter: nil)
        for column in columns {
            if let result = best.loops[.uncontended]?[column] {
                uncontendedRate.cells[column] = TableCell(formatCount(result.pairsPerSecond), value: result.pairsPerSecond)
                uncontendedLatency.cells[column] = TableCell(
                    "\(formatMicroseconds(result.latency.p50)) / \(formatMicroseconds(result.latency.p99)) / \(formatMicroseconds(result.latency.p999))",
                    value: Double(result.latency.p50))
                if column.isBaton, let floor = best.floor[column]?.latency.p50, floor > 0 {
                    uncontendedFloor.cells[column] = TableCell(String(format: "%.2f", Double(result.latency.p50) / Double(2 * floor)))
                }
                uncontendedCPU.cells[column] = cpuCell(result.serverCPUNanosecondsPerPair)
            }
            if let result = best.loops[.contended]?[column] {
                contendedRate.cells[column] = TableCell(formatCount(result.pairsPerSecond), value: result.pairsPerSecond)
                contendedWait.cells[column] = TableCell("\(formatMicroseconds(result.latency.p50)) / \(formatMicroseconds(result.latency.p99))",
                                                        value: Double(result.latency.p99))
                let spreadRatio = result.fewestGrants > 0 ? Double(result.mostGrants) / Double(result.fewestGrants) : .infinity
                contendedFairness.cells[column] = TableCell("\(result.fewestGrants)..\(result.mostGrants) (\(String(format: "%.2f", spreadRatio)))",
                                                            value: spreadRatio)
                contendedCPU.cells[column] = cpuCell(result.serverCPUNanosecondsPerPair)
                contendedClientCPU.cells[column] = cpuCell(result.clientCPUNanosecondsPerPair)
            }
            if let result = best.loops[.spread]?[column] {
                spreadRate.cells[column] = TableCell(formatCount(result.pairsPerSecond), value: result.pairsPerSecond)
                spreadCPU.cells[column] = cpuCell(result.serverCPUNanosecondsPerPair)
                spreadClientCPU.cells[column] = cpuCell(result.clientCPUNanosecondsPerPair)
            }
        }
        var rows = [uncontendedRate, uncontendedLatency, uncontendedFloor, uncontendedCPU]
        let raw = best.loops[.uncontended]?[.batonUnix]
        for kind in LibraryClient.allCases {
            guard let result = best.library[kind] else { continue }
            var row = TableRow("1. uncontended via the Swift library's \(kind.title): pairs/s; p50 µs; server CPU µs per pair", higherIsBetter: nil)
            row.cells[.batonUnix] = TableCell("\(formatCount(result.pairsPerSecond)); \(formatMicroseconds(result.latency.p50)); "
                                              + (result.serverCPUNanosecondsPerPair.map { formatMicroseconds(UInt64($0)) } ?? "?"))
            row.ratioText = "p50 ÷ raw client's: " + ratioText(Double(result.latency.p50), raw.map { Double($0.latency.p50) })
            rows.append(row)
        }
        return rows + [contendedRate, contendedWait, contendedFairness, contendedCPU, contendedClientCPU, spreadRate, spreadCPU, spreadClientCPU]
    }

    /// Row 4: SIGKILL of the holder's process; the waiter on the column's last target (another sidecar or member).
    func takeoverRow(_ columns: [Column]) -> TableRow {
        var takeover = TableRow("4. takeover: SIGKILL of the holder's process to a waiter holding, ms (median of \(settings.takeoverSamples))",
                                higherIsBetter: false)
        for column in columns {
            let targets = settings.targets[column]!
            if let result = attempt(column, "takeover", { () throws(BenchError) in
                try runTakeover(target: targets.first!, waiterTarget: targets.last!, samples: settings.takeoverSamples,
                                options: settings.options, lockPrefix: "/bench/takeover-\(run)-\(column.rawValue)",
                                executable: settings.executable)
            }) {
                takeover.cells[column] = TableCell("\(formatMilliseconds(result.medianNanoseconds)) (\(result.holderSetting))",
                                                   value: Double(result.medianNanoseconds))
            }
        }
        return takeover
    }

    /// Row 9: ping and get one at a time, with the server's CPU per request.
    func requestRows(_ columns: [Column]) -> (rows: [TableRow], results: [RequestKind: [Column: RequestResult]]) {
        var rows: [TableRow] = []
        var results: [RequestKind: [Column: RequestResult]] = [:]
        for kind in RequestKind.allCases {
            let name = kind == .ping ? "ping (Redis PING; ZooKeeper and etcd have none)" : "get of a 16-byte value (Redis GET, ZooKeeper getData, etcd range)"
            var rate = TableRow("9. \(name), one at a time: requests/s (p50 µs)", higherIsBetter: true)
            var cpu = TableRow("9. \(kind.rawValue): server CPU µs per request", higherIsBetter: false)
            for column in columns where supports(kind, target(column)) {
                guard let result = attempt(column, kind.rawValue, { () throws(BenchError) in
                    try runRequests(kind, target: target(column), seconds: max(settings.seconds / 3, 0.1), options: settings.options,
                                    key: "/bench/requests-\(run)-\(column.rawValue)", serverProcessIDs: pids(column))
                }) else { continue }
                results[kind, default: [:]][column] = result
                rate.cells[column] = TableCell("\(formatCount(result.requestsPerSecond)) (\(formatMicroseconds(result.latency.p50)))",
                                               value: result.requestsPerSecond)
                cpu.cells[column] = cpuCell(result.serverCPUNanosecondsPerRequest)
            }
            rows += [rate, cpu]
        }
        return (rows, results)
    }
}

/// Runs every scenario against every configured target; a target that fails a scenario gets
/// "failed" in that cell and the error in the notes, and the run goes on.
public func runComparison(_ settings: ComparisonSettings) -> ComparisonReport {
    let context = ComparisonRun(settings)
    let run = context.run
    let columns = context.columns(Column.lockColumns)
    if let batonProcessID = context.pids(.batonUnix).first {
        if let limit = descriptorLimit(processID: batonProcessID), limit < UInt64((settings.herdWaiters.max() ?? 0) + 64) {
            context.notes.append("batond's open-file limit is \(limit): too low for \(settings.herdWaiters.max() ?? 0) waiters")
        }
    }
    let best = context.rounds(columns, floors: true)
    var rows = context.loopRows(best, columns)
    var floorRow = TableRow("8. floor: bare round trip of a \(floorFrameBytes)-byte frame (blocking echo), p50 µs (round trips/s)", higherIsBetter: nil)
    for (column, result) in best.floor {
        floorRow.cells[column] = TableCell("\(formatMicroseconds(result.latency.p50)) (\(formatCount(result.roundTripsPerSecond))/s)")
    }
    var echoRow = TableRow("8. bare libuv echo server (C): round trip p50 µs; server CPU µs per message", higherIsBetter: nil)
    for (column, result) in best.echo {
        echoRow.cells[column] = TableCell("\(formatMicroseconds(result.latency.p50)); "
                                          + (result.serverCPUNanosecondsPerMessage.map { formatMicroseconds(UInt64($0)) } ?? "?"))
    }
    for column in [Column.redis, .zookeeper, .etcd] where settings.targets[column] != nil {
        floorRow.cells[column] = TableCell("TCP: \(floorRow.cells[.batonTCP]?.text ?? "—")")
    }

    rows.append(context.takeoverRow(columns))

    // 5. Herd. Setting up 10,000 sessions takes a while: long session timeouts keep the first ones alive.
    var herdOptions = settings.options
    herdOptions.batonSessionTimeoutMilliseconds = 300_000
    var herdCPU: [Int: [Column: Double]] = [:]
    for waiters in settings.herdWaiters {
        var handoff = TableRow("5. herd, \(waiters) waiters: release to next holder p50 / p99 µs", higherIsBetter: false)
        var cpu = TableRow("5. herd, \(waiters) waiters: server CPU per release, µs", higherIsBetter: false)
        var woken = TableRow("5. herd, \(waiters) waiters: clients woken per release (Redis: failed SET NX tries; ZooKeeper: watch events)", higherIsBetter: false)
        for column in columns {
            let target = context.target(column)
            let lock = "/bench/herd-\(run)-\(column.rawValue)-\(waiters)"
            let result: HerdResult?
            var label = ""
            if case .baton(let endpoint) = target {
                result = context.attempt(column, "herd \(waiters)", { () throws(BenchError) in
                    try runBatonHerd(endpoint: endpoint, waiters: waiters, releases: settings.herdReleases,
                                     serverProcessIDs: context.pids(column), options: herdOptions, lock: lock)
                })
            } else {
                let peerWaiters = min(waiters, settings.peerHerdWaitersMax)
                if peerWaiters < waiters { label = " [\(peerWaiters) waiters]" }
                result = context.attempt(column, "herd \(peerWaiters)", { () throws(BenchError) in
                    try runThreadedHerd(target: target, waiters: peerWaiters, serverProcessIDs: context.pids(column),
                                        options: settings.options, lock: lock)
                })
            }
            guard let result else { continue }
            handoff.cells[column] = TableCell("\(formatMicroseconds(result.handoff.p50)) / \(formatMicroseconds(result.handoff.p99))\(label)",
                                              value: Double(result.handoff.p50))
            if let nanoseconds = result.serverCPUNanosecondsPerRelease {
                cpu.cells[column] = TableCell(formatMicroseconds(UInt64(max(nanoseconds, 0))) + label, value: nanoseconds)
                herdCPU[waiters, default: [:]][column] = nanoseconds
            }
            if let count = result.wokenPerRelease {
                woken.cells[column] = TableCell(String(format: "%.2f", count) + label, value: count)
            } else {
                woken.cells[column] = TableCell("not visible to the client" + label)
            }
        }
        rows += [handoff, cpu, woken]
    }
    if settings.herdWaiters.count == 2 {
        let (few, many) = (settings.herdWaiters.min()!, settings.herdWaiters.max()!)
        var growth = TableRow("5. herd: server CPU per release with \(many) waiters ÷ with \(few)", higherIsBetter: nil)
        for column in columns where column.isBaton {
            if let small = herdCPU[few]?[column], let large = herdCPU[many]?[column], small > 0 {
                growth.cells[column] = TableCell(formatRatio(large / small), value: large / small)
            }
        }
        rows.append(growth)
    }

    let (requestRows, requests) = context.requestRows(columns)
    rows += requestRows

    // 6. Namespace writes: Baton's durability settings against Redis's, in their own table.
    let writeColumns = context.columns(Column.writeColumns)
    let writeOperations = ["set", "create"]
    var writeRates: [String: [NamespaceMode: [Column: Double]]] = [:]
    for column in writeColumns {
        let result: NamespaceResult?
        switch context.target(column) {
        case .baton(let endpoint):
            result = context.attempt(column, "namespace", { () throws(BenchError) in
                try runBatonNamespace(endpoint: endpoint, seconds: settings.seconds / 2, modes: settings.namespaceModes,
                                      operations: writeOperations, options: settings.options,
                                      directory: "/bench/namespace-\(run)-\(column.rawValue)")
            })
        case .redis(let host, let port):
            result = context.attempt(column, "namespace", { () throws(BenchError) in
                try runRedisNamespace(host: host, port: port, seconds: settings.seconds / 2, modes: settings.namespaceModes,
                                      operations: writeOperations, options: settings.options,
                                      prefix: "/bench/namespace-\(run)-\(column.rawValue)")
            })
        default: result = nil
        }
        guard let result else { continue }
        for (operation, byMode) in result.operationsPerSecond {
            for (mode, rate) in byMode { writeRates[operation, default: [:]][mode, default: [:]][column] = rate }
        }
    }
    var writeRows: [TableRow] = []
    for operation in writeOperations {
        for mode in settings.namespaceModes {
            let name = operation == "create" ? "create (Redis: SET NX of a new key)" : "set (Redis: SET)"
            var row = TableRow("6. \(name) ops/s, \(mode)", higherIsBetter: true)
            let rates = writeRates[operation]?[mode] ?? [:]
            for (column, rate) in rates { row.cells[column] = TableCell(formatCount(rate), value: rate) }
            row.ratioText = "\(ratioText(rates[.batonUnix], rates[.redisAlways])) / \(ratioText(rates[.batonInMemory], rates[.redis]))"
            writeRows.append(row)
        }
    }

    // 7. Footprint of batond (the Unix endpoint gives its process).
    var footprint = TableRow("7. footprint: batond resident memory idle / \(formatCount(Double(settings.footprintNodes))) nodes / +\(formatCount(Double(settings.footprintSessions))) sessions",
                             higherIsBetter: nil)
    var footprintTarget: (Endpoint, Int32)?
    if let endpoint = settings.footprintEndpoint, let processID = try? BlockingSocket.connect(endpoint).peerProcessID {
        footprintTarget = (endpoint, processID)
    } else if case .baton(let endpoint)? = settings.targets[.batonUnix]?.first, let batonProcessID = context.pids(.batonUnix).first {
        footprintTarget = (endpoint, batonProcessID)
    }
    if let (endpoint, footprintProcessID) = footprintTarget {
        if let result = context.attempt(.batonUnix, "footprint", { () throws(BenchError) in
            try runBatonFootprint(endpoint: endpoint, serverProcessID: footprintProcessID, nodes: settings.footprintNodes,
                                  sessions: settings.footprintSessions, options: settings.options, directory: "/bench/footprint-\(run)")
        }) {
            footprint.cells[.batonUnix] = TableCell("\(formatBytes(result.baselineBytes)) / \(formatBytes(result.withNodesBytes)) / \(formatBytes(result.withSessionsBytes))")
        }
    }
    for column in [Column.redis, .zookeeper, .etcd] where settings.targets[column] != nil {
        if let processID = context.pids(column).first, let bytes = residentBytes(processID) {
            footprint.cells[column] = TableCell("\(formatBytes(bytes)) after the run")
        }
    }
    rows.append(footprint)
    rows.append(floorRow)
    rows.append(echoRow)

    // Issue 11's targets, each with this run's ratio.
    func loop(_ scenario: LoopScenario, _ column: Column) -> LoopResult? { best.loops[scenario]?[column] }
    var targets: [String] = []
    let batonPair = loop(.uncontended, .batonUnix)?.serverCPUNanosecondsPerPair
    let echoMessage = best.echo[.batonUnix]?.serverCPUNanosecondsPerMessage
    targets.append("server CPU per uncontended pair ÷ (2 × libuv echo CPU per message), Unix: "
                   + ratioText(batonPair, echoMessage.map { 2 * $0 }) + " (target ≤ 1.3)")
    targets.append("server CPU per uncontended pair, Baton ÷ Redis: "
                   + ratioText(batonPair, loop(.uncontended, .redis)?.serverCPUNanosecondsPerPair) + " (target ≤ 1)")
    targets.append("server CPU per spread pair, Baton ÷ Redis: "
                   + ratioText(loop(.spread, .batonUnix)?.serverCPUNanosecondsPerPair, loop(.spread, .redis)?.serverCPUNanosecondsPerPair))
    for kind in RequestKind.allCases {
        targets.append("server CPU per \(kind.rawValue), Baton ÷ Redis: "
                       + ratioText(requests[kind]?[.batonUnix]?.serverCPUNanosecondsPerRequest, requests[kind]?[.redis]?.serverCPUNanosecondsPerRequest)
                       + "; Baton ÷ (libuv echo CPU per message): "
                       + ratioText(requests[kind]?[.batonUnix]?.serverCPUNanosecondsPerRequest, echoMessage))
    }
    targets.append("uncontended pairs/s, Baton ÷ Redis: "
                   + ratioText(loop(.uncontended, .batonUnix)?.pairsPerSecond, loop(.uncontended, .redis)?.pairsPerSecond) + " (target ≥ 1.7)")
    targets.append("spread pairs/s, Baton ÷ Redis: "
                   + ratioText(loop(.spread, .batonUnix)?.pairsPerSecond, loop(.spread, .redis)?.pairsPerSecond) + " (target ≥ 1.6)")
    // What any server could reach in this run: with one client, a pair is two round trips, none
    // faster than the bare libuv echo's; with 16 clients on this machine's cores, a pair costs at
    // least the clients' CPU plus two echo messages' server CPU.
    let redisUncontended = loop(.uncontended, .redis)?.pairsPerSecond
    if let echoRoundTrip = best.echo[.batonUnix]?.latency.p50, echoRoundTrip > 0 {
        let ceiling = 1e9 / Double(2 * echoRoundTrip)
        targets.append("uncontended ceiling, a pair in two bare libuv echo round trips (\(formatMicroseconds(echoRoundTrip)) µs each): "
                       + "\(formatCount(ceiling)) pairs/s = " + ratioText(ceiling, redisUncontended) + " x Redis")
    }
    let cores = ProcessInfo.processInfo.activeProcessorCount
    if let echoMessage, let clients = loop(.spread, .batonUnix)?.clientCPUNanosecondsPerPair {
        let ceiling = Double(cores) * 1e9 / (clients + 2 * echoMessage)
        targets.append("spread ceiling on \(cores) cores, Baton's clients' CPU per pair (\(formatMicroseconds(UInt64(clients))) µs) "
                       + "plus two bare libuv echo messages' (\(formatMicroseconds(UInt64(2 * echoMessage))) µs): "
                       + "\(formatCount(ceiling)) pairs/s = " + ratioText(ceiling, loop(.spread, .redis)?.pairsPerSecond) + " x Redis")
    }
    if let contended = loop(.contended, .batonUnix) {
        targets.append("contended grants/s, Baton ÷ Redis: " + ratioText(contended.pairsPerSecond, loop(.contended, .redis)?.pairsPerSecond)
                       + " (target ≥ 2); wait p99 \(formatMicroseconds(contended.latency.p99)) µs (target < 1000); most/fewest "
                       + ratioText(Double(contended.mostGrants), Double(contended.fewestGrants)) + " (target ≤ 1.05)")
    }
    for kind in LibraryClient.allCases where best.library[kind] != nil {
        targets.append("Swift library \(kind.title): uncontended pair p50 ÷ raw client's: "
                       + ratioText(best.library[kind].map { Double($0.latency.p50) }, loop(.uncontended, .batonUnix).map { Double($0.latency.p50) })
                       + " (target ≤ 1.2)")
    }
    if let few = settings.herdWaiters.min(), let many = settings.herdWaiters.max(), few != many {
        targets.append("herd: server CPU per release with \(many) waiters ÷ with \(few): "
                       + ratioText(herdCPU[many]?[.batonUnix], herdCPU[few]?[.batonUnix]) + " (target ≤ 1)")
    }
    let concurrent = settings.namespaceModes.first { if case .clients = $0 { return true } else { return false } }
    for operation in writeOperations {
        if let concurrent {
            targets.append("\(operation) at \(concurrent), Baton --fsync batch ÷ Redis AOF always: "
                           + ratioText(writeRates[operation]?[concurrent]?[.batonUnix], writeRates[operation]?[concurrent]?[.redisAlways])
                           + " (target ≥ 1.5)")
        }
        for mode in settings.namespaceModes where mode != concurrent {
            targets.append("\(operation) \(mode), Baton --in-memory ÷ Redis default: "
                           + ratioText(writeRates[operation]?[mode]?[.batonInMemory], writeRates[operation]?[mode]?[.redis]) + " (target ≥ 1)")
        }
    }
    return ComparisonReport(table: renderTable(rows, columns: columns),
                            writeTable: renderTable(writeRows, columns: writeColumns,
                                                    ratioTitle: "batch ÷ AOF always / in-memory ÷ Redis default"),
                            targets: targets, notes: context.notes)
}
