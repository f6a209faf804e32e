import BatonProtocol
import BatonTestSupport
import Foundation

/// Set (before the SIGKILL is sent) once the daemon is being killed: from then on a failing
/// connection is expected rather than a test failure.
final class CrashKillSwitch: @unchecked Sendable {
    private let lock = NSLock()
    private var killed = false
    var isKilled: Bool { lock.withLock { killed } }
    func kill() { lock.withLock { killed = true } }
}

/// The locks the clients take: two exclusive, one read-write (readers and writers), one semaphore.
enum CrashLock: CaseIterable {
    case first, second, readWrite, semaphore

    static let parent = "/crash-locks"
    var path: String {
        switch self {
        case .first: CrashLock.parent + "/exclusive-1"
        case .second: CrashLock.parent + "/exclusive-2"
        case .readWrite: CrashLock.parent + "/read-write"
        case .semaphore: CrashLock.parent + "/semaphore"
        }
    }
    static let semaphorePermits: UInt32 = 2
}

/// A grant a client received.
struct CrashGrant {
    var lockPath: String
    var node: String
    var token: UInt64
}

/// One client of the crash test: its own connection and session, the only writer of its subtree
/// `/crash/c<index>` (plain nodes `n0`...`n7`, sequential children of `seq`), and a taker of the
/// shared locks. It predicts every reply from its model, records what was acknowledged, and keeps
/// the writes whose replies never came (`inFlight`, several when it pipelined): after the restart
/// the state must be the acknowledged one plus a prefix of those writes, each whole.
final class CrashClient: @unchecked Sendable {
    let index: Int
    let root: String
    var sequenceParent: String { root + "/seq" }
    static let plainKeyCount = 8

    /// What the daemon acknowledged (plus, after verification, what the restart showed of the rest).
    var model: CrashTree
    /// Highest sequence number ever seen under `sequenceParent` (earlier rounds and this one).
    var sequenceSeen: UInt64?

    // Per round (reset by `prepareRound`).
    /// Writes sent whose replies have not come, in the order sent.
    private(set) var inFlight: [CrashOperation] = []
    private(set) var grants: [CrashGrant] = []
    private(set) var failures: [String] = []
    private(set) var acknowledgedCount = 0
    private(set) var lastTransaction: UInt64 = 0
    private var transactionFloor: UInt64 = 0
    private var round = 0
    private var lockCyclePercent: UInt64 = 0
    private var operationCount = 0

    init(index: Int) {
        self.index = index
        root = "/crash/c\(index)"
        model = CrashTree(nodes: [root: CrashNodeValue(data: [], version: 0),
                                  root + "/seq": CrashNodeValue(data: [], version: 0)])
    }

    /// Before a round: every zxid handed out from now on must exceed `transactionFloor`.
    /// `lockCyclePercent` of the steps are lock cycles. Mostly locks makes it likely that the last
    /// zxids handed out before a kill went to waiter nodes, which are never logged: only the
    /// reserved mark keeps their tokens from being handed out again.
    func prepareRound(_ round: Int, transactionFloor: UInt64, lockCyclePercent: UInt64) {
        self.round = round
        self.lockCyclePercent = lockCyclePercent
        self.transactionFloor = transactionFloor
        lastTransaction = transactionFloor
        inFlight = []
        grants = []
        failures = []
        acknowledgedCount = 0
        operationCount = 0
    }

    /// The verification after the restart settled what the in-flight operation did.
    func settle(model: CrashTree) {
        self.model = model
        inFlight = []
    }

    private func fail(_ message: String) {
        failures.append("client \(index), round \(round): \(message)")
    }

    /// Runs operations until the connection fails. A failure before the kill switch is set is a
    /// test failure; after it, the expected end of the round.
    func run(socketPath: String, random: SeededGenerator, killSwitch: CrashKillSwitch) {
        var random = random
        do {
            let connection = try RawConnection(unixPath: socketPath)
            defer { connection.close() }
            try connection.handshake(clientName: "crash-\(index)")
            while failures.isEmpty {
                let roll = random.next() % 100
                if roll < lockCyclePercent {
                    try lockCycle(connection, &random)
                } else if roll < lockCyclePercent + 12 {
                    try writePipelined((0..<(2 + random.next() % 5)).map { _ in nextOperation(&random) }, connection)
                } else {
                    try write(nextOperation(&random), connection)
                }
            }
        } catch {
            if !killSwitch.isKilled { fail("connection failed before the kill: \(error)") }
        }
    }

    // MARK: Writes

    private func write(_ operation: CrashOperation, _ connection: RawConnection) throws {
        try writePipelined([operation], connection)
    }

    /// Sends the writes in one go (one turn of the daemon's loop may take them all: one group
    /// commit), then reads their replies in order. Each is predicted from the model as it stands
    /// when its reply comes: the daemon applies them in order, and nobody else writes here.
    private func writePipelined(_ operations: [CrashOperation], _ connection: RawConnection) throws {
        var bytes: [UInt8] = []
        var requestIDs: [UInt32] = []
        for operation in operations {
            let requestID = connection.takeRequestID()
            requestIDs.append(requestID)
            bytes += Codec.encodeRequest(operation.request, requestID: requestID)
        }
        inFlight = operations
        try connection.sendRaw(bytes)
        for (operation, requestID) in zip(operations, requestIDs) {
            let reply = try connection.receiveReply(timeoutSeconds: 60)
            try endIfShuttingDown(reply)
            inFlight.removeFirst()
            acknowledgedCount += 1
            guard reply.requestID == requestID else {
                return fail("reply to request \(reply.requestID), expected \(requestID) (\(operation))")
            }
            check(reply, of: operation)
        }
    }

    /// A graceful stop answers what is pending (and then sends an unattributed reply) with
    /// `shuttingDown`: the end of the round, like a closed connection (a failure before the kill).
    private func endIfShuttingDown(_ reply: Reply) throws {
        if case .failure(let error) = reply.result, error.code == .shuttingDown { throw TestSupportError.closed }
    }

    private func check(_ reply: Reply, of operation: CrashOperation) {
        let expectedFailure = model.predictedFailure(of: operation)
        switch reply.result {
        case .failure(let error):
            if error.code != expectedFailure {
                fail("\(operation) answered \(error), expected \(expectedFailure.map { "\($0)" } ?? "success")")
            }
        case .success(let body):
            guard expectedFailure == nil else {
                return fail("\(operation) succeeded, expected \(expectedFailure!)")
            }
            guard let createdPaths = checkSuccess(of: operation, body) else { return }
            model.apply(operation) { _, changeIndex in createdPaths[changeIndex] }
        }
    }

    /// Checks a successful reply against the model; returns the paths sequential creates got, by
    /// change index, or nil after recording a failure.
    private func checkSuccess(of operation: CrashOperation, _ body: ReplyBody) -> [Int: String]? {
        let results: [MultiResult]
        switch (operation, body) {
        case (.single(.create), .created(let created, let stat)), (.single(.createSequential), .created(let created, let stat)):
            results = [.created(path: created, stat: stat)]
        case (.single(.set), .stat(let stat)):
            results = [.set(stat)]
        case (.single(.delete), .empty):
            results = [.deleted]
        case (.multi(let changes), .multi(let multiResults)) where multiResults.count == changes.count:
            results = multiResults
        default:
            fail("\(operation) answered \(body)")
            return nil
        }
        var createdPaths: [Int: String] = [:]
        var transaction: UInt64?
        // Later changes of a multi see the earlier ones: check each against the model as it goes.
        var scratch = model
        for (changeIndex, (change, result)) in zip(operation.changes, results).enumerated() {
            if case .created(let created, _) = result {
                scratch.apply(.single(change)) { _, _ in created }
            } else {
                scratch.apply(.single(change)) { _, _ in nil }
            }
            switch (change, result) {
            case (.create(let path, let data), .created(let created, let stat)):
                guard created == path, stat.version == 0, stat.dataLength == UInt32(data.count), stat.kind == .persistent else {
                    fail("create \(path) answered \(created) \(stat)")
                    return nil
                }
                transaction = stat.createdTransaction
            case (.createSequential(let parent, let data), .created(let created, let stat)):
                guard created.hasPrefix(parent + "/" + CrashChange.sequentialPrefix), let sequence = crashSequenceNumber(of: created),
                      stat.version == 0, stat.dataLength == UInt32(data.count) else {
                    fail("sequential create under \(parent) answered \(created) \(stat)")
                    return nil
                }
                if let seen = sequenceSeen, sequence <= seen {
                    fail("sequence number \(sequence) under \(parent) is not above \(seen), already handed out")
                }
                sequenceSeen = max(sequenceSeen ?? 0, sequence)
                createdPaths[changeIndex] = created
                transaction = stat.createdTransaction
            case (.set(let path, _, _), .set(let stat)):
                let expected = scratch.nodes[path]?.version ?? -1
                guard stat.version == expected else {
                    fail("set \(path) answered version \(stat.version), expected \(expected)")
                    return nil
                }
                transaction = stat.modifiedTransaction
            case (.delete, .deleted), (.check, .checked):
                break
            default:
                fail("\(operation): change \(changeIndex) answered \(result)")
                return nil
            }
        }
        // A write (a whole multi) takes the next zxid: above every zxid before this round, and
        // above the last one this client saw (its operations are sequential).
        if let transaction {
            if transaction <= lastTransaction {
                fail("\(operation) got zxid \(transaction), not above \(lastTransaction) (floor before this round \(transactionFloor))")
            }
            lastTransaction = max(lastTransaction, transaction)
        }
        return createdPaths
    }

    /// A random write over the client's subtree, mostly one that succeeds, sometimes one that must fail.
    private func nextOperation(_ random: inout SeededGenerator) -> CrashOperation {
        operationCount += 1
        let roll = random.next() % 100
        if roll < 22 {
            guard let (path, node) = presentPlainNode(&random) else { return .single(.create(path: plainKey(&random), data: data("create", &random))) }
            let expected: Int32 = switch random.next() % 20 {
            case 0: node.version + 3  // fails: badVersion
            case 1: anyVersion
            default: node.version
            }
            return .single(.set(path: path, data: data("set", &random), expectedVersion: expected))
        } else if roll < 36 {
            // Sometimes on an existing node: nodeExists.
            return .single(.create(path: plainKey(&random), data: data("create", &random)))
        } else if roll < 44 {
            guard let (path, node) = presentPlainNode(&random) else { return .single(.createSequential(parent: sequenceParent, data: data("sequential", &random))) }
            return .single(.delete(path: path, expectedVersion: random.next() % 10 == 0 ? node.version + 1 : node.version))
        } else if roll < 62 {
            return .single(.createSequential(parent: sequenceParent, data: data("sequential", &random)))
        } else if roll < 70 {
            let children = sequentialChildren()
            guard children.count > 6, let oldest = children.first else {
                return .single(.createSequential(parent: sequenceParent, data: data("sequential", &random)))
            }
            return .single(.delete(path: oldest, expectedVersion: model.nodes[oldest]!.version))
        } else {
            return .multi(multiChanges(&random))
        }
    }

    /// 2 to 5 changes that succeed together on the current model, sometimes with a failing check last.
    private func multiChanges(_ random: inout SeededGenerator) -> [CrashChange] {
        var scratch = model
        var changes: [CrashChange] = []
        let count = 2 + Int(random.next() % 4)
        while changes.count < count {
            let key = plainKey(&random)
            let change: CrashChange
            switch random.next() % 5 {
            case 0:
                change = .createSequential(parent: sequenceParent, data: data("multi-sequential", &random))
            case 1:
                guard let sequential = sequentialChildren(in: scratch).first else { continue }
                change = .delete(path: sequential, expectedVersion: scratch.nodes[sequential]!.version)
            default:
                if let node = scratch.nodes[key] {
                    change = random.next() % 3 == 0 ? .delete(path: key, expectedVersion: node.version)
                        : .set(path: key, data: data("multi-set", &random), expectedVersion: node.version)
                } else {
                    change = .create(path: key, data: data("multi-create", &random))
                }
            }
            if case .createSequential = change {} else {
                scratch.apply(.single(change)) { _, _ in nil }
            }
            changes.append(change)
        }
        if random.next() % 7 == 0, let (path, node) = presentPlainNode(&random, in: scratch) {
            changes.append(.check(path: path, expectedVersion: node.version + 5))  // fails: nothing may apply
        }
        return changes
    }

    private func plainKey(_ random: inout SeededGenerator) -> String {
        root + "/n\(random.next() % UInt64(CrashClient.plainKeyCount))"
    }

    private func presentPlainNode(_ random: inout SeededGenerator, in tree: CrashTree? = nil) -> (String, CrashNodeValue)? {
        let nodes = (tree ?? model).nodes
        let present = (0..<CrashClient.plainKeyCount).map { root + "/n\($0)" }.filter { nodes[$0] != nil }
        guard !present.isEmpty else { return nil }
        let path = present[Int(random.next() % UInt64(present.count))]
        return (path, nodes[path]!)
    }

    private func sequentialChildren(in tree: CrashTree? = nil) -> [String] {
        (tree ?? model).nodes.keys.filter { $0.hasPrefix(sequenceParent + "/") }.sorted()
    }

    /// Data naming who wrote it and when, padded to a random length with bytes derived from that
    /// name: any partial or mixed-up value is visible as a mismatch. Now and then several KiB, so
    /// that a torn write has room to tear, and rarely a few hundred KiB, so that the log fills its
    /// 64 MiB segments and rolls to new ones during the run (then snapshots prune old segments).
    private func data(_ what: String, _ random: inout SeededGenerator) -> [UInt8] {
        let tag = Array("c\(index) r\(round) op\(operationCount) \(what) #\(random.next() % 1_000_000);".utf8)
        let padding = switch random.next() % 100 {
        case 0..<3: 131_072 + Int(random.next() % 262_144)
        case 3..<13: 2_048 + Int(random.next() % 8_192)
        default: Int(random.next() % 96)
        }
        var bytes = tag
        bytes.reserveCapacity(tag.count + padding)
        for offset in 0..<padding { bytes.append(tag[offset % tag.count] &+ UInt8(truncatingIfNeeded: offset / tag.count)) }
        return bytes
    }

    // MARK: Locks

    /// Acquire a lock (waiting), do up to two writes while holding it, release it.
    private func lockCycle(_ connection: RawConnection, _ random: inout SeededGenerator) throws {
        let lock = CrashLock.allCases[Int(random.next() % UInt64(CrashLock.allCases.count))]
        let request: LockRequest = switch lock {
        case .first, .second: LockRequest(path: lock.path, kind: .exclusive)
        case .readWrite: LockRequest(path: lock.path, kind: random.next() % 3 == 0 ? .exclusive : .shared)
        case .semaphore: LockRequest(path: lock.path, kind: .semaphore, permits: CrashLock.semaphorePermits)
        }
        let reply = try connection.call(.acquire(request), timeoutSeconds: 60)
        try endIfShuttingDown(reply)
        guard case .success(.granted(let node, let token)) = reply.result else {
            return fail("acquire \(lock.path) answered \(reply.result)")
        }
        guard node.hasPrefix(lock.path + "/"), crashSequenceNumber(of: node) != nil else {
            return fail("acquire \(lock.path) granted node \(node)")
        }
        // The token is the waiter node's creation zxid: above every zxid before (this round's floor
        // and this client's own last write or grant).
        if token <= lastTransaction {
            fail("acquire \(lock.path) got token \(token), not above \(lastTransaction) (floor before this round \(transactionFloor))")
        }
        lastTransaction = max(lastTransaction, token)
        grants.append(CrashGrant(lockPath: lock.path, node: node, token: token))
        for _ in 0..<(random.next() % 3) { try write(nextOperation(&random), connection) }
        let released = try connection.call(.release(node: node, token: token), timeoutSeconds: 60)
        try endIfShuttingDown(released)
        guard case .success(.empty) = released.result else {
            return fail("release \(node) answered \(released.result)")
        }
    }
}
