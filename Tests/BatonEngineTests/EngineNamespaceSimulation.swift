@testable import BatonEngine
import BatonNamespace
import BatonProtocol
import XCTest
import BatonTestSupport

/// Random clients against the real engine, from a seed: connections (Unix and TCP) come and go,
/// open, close and resume sessions, create (every mode), delete, set, read with watches and send
/// multis, while time advances past session timeouts. A model of sessions and watch registrations
/// is checked against the engine after every step:
/// - a watch registration fires at most once, only for a change of its kind that happened in that
///   step, and always when such a change definitely happened (one-shot, ZooKeeper's rules);
/// - every event precedes the reply of the request that caused it;
/// - events for a detached session wait in its queue and come right after the resume reply;
/// - sessions live exactly until one timeout after their last frame (Unix ones end on disconnect),
///   and no ephemeral node outlives its session;
/// - transaction ids in replies strictly increase, and so do sequence suffixes per parent;
/// and at the end of a run, replaying every `.persist` record through the recovery initializer
/// reproduces the persistent state, with counters no lower than the live ones, and a shutdown says
/// goodbye to every connection and ends every session.
final class EngineNamespaceSimulation {
    struct Failure: Error, CustomStringConvertible { var description: String }

    private struct Registration: Hashable {
        var path: String
        var children: Bool
    }

    private struct SessionModel {
        var secret: SessionSecret
        var timeoutMilliseconds: UInt64
        var transport: TransportKind
        var keepOnDisconnect: Bool
        var connection: ConnectionID?
        var lastHeardMilliseconds: UInt64
        var registrations: Set<Registration> = []
        /// Events of the engine's queue for this detached session that were already checked.
        var queuedChecked = 0
    }

    private struct SequenceKey: Hashable {
        var parent: String
        var parentCreatedTransaction: UInt64
    }

    static let detachedSessionEventsMax = 6

    let seed: UInt64
    private var random: SeededGenerator
    private let harness: EngineHarness
    private var engine: Engine { harness.engine }
    private var namespace: Namespace { harness.engine.namespace }
    /// Open connections and the session each speaks for.
    private var connections: [ConnectionID: (transport: TransportKind, session: UInt64?)] = [:]
    private var sessions: [UInt64: SessionModel] = [:]
    private var nextConnection: ConnectionID = 1
    private var persisted: [[UInt8]] = []
    private var lastTransaction: UInt64 = 0
    private var lastSequence: [SequenceKey: UInt64] = [:]
    private var step = 0
    private(set) var watchEvents = 0
    private(set) var sessionsEnded = 0
    private(set) var resumes = 0
    private(set) var queuedEvents = 0

    private let paths = ["/s", "/s/a", "/s/b", "/s/c", "/s/a/x", "/s/a/y", "/s/c/k", "/s/b/z"]
    private let sequentialPrefixes = ["/s/q-", "/s/a/n-", "/s/c/"]

    init(seed: UInt64) {
        self.seed = seed
        random = SeededGenerator(seed: seed)
        harness = EngineHarness(seed: seed) {
            $0.containerGraceMilliseconds = 300
            $0.detachedSessionEventsMax = Self.detachedSessionEventsMax
        }
    }

    private func below(_ bound: Int) -> Int { Int(random.next() % UInt64(bound)) }
    private func pick<T>(_ values: [T]) -> T { values[below(values.count)] }

    private func fail(_ message: String) -> Failure {
        Failure(description: "EngineNamespaceSimulation seed \(seed) step \(step): \(message)")
    }

    // MARK: Running

    func run(steps: Int) throws {
        var setup = StepContext(before: nodeStats(), transactionBefore: namespace.transactionCurrent)
        connect(transport: .unix)
        try check(send(.openSession(timeoutMilliseconds: 60_000, flags: []), on: 1, &setup), setup)
        setup = StepContext(before: nodeStats(), transactionBefore: namespace.transactionCurrent)
        try check(send(.create(path: "/s", data: [], mode: .persistent), on: 1, &setup), setup)
        for index in 0..<steps {
            step = index
            try oneStep()
        }
        try finish()
    }

    /// What a step did, for the checks.
    private struct StepContext {
        var before: [String: Stat]
        var transactionBefore: UInt64
        /// The request of the step and its id, if it sent one.
        var request: (connection: ConnectionID, requestID: UInt32, request: Request)?
        /// A resume: the session and the events its queue held before (sent after the reply).
        var resumed: (session: UInt64, queued: [Event])?
    }

    private func oneStep() throws {
        var context = StepContext(before: nodeStats(), transactionBefore: namespace.transactionCurrent)
        let outputs: [EngineOutput]
        let roll = below(100)
        switch roll {
        case 0..<6:
            outputs = connect()
        case 6..<13:
            guard let connection = someConnection(withSession: false) else { return }
            let keep = connections[connection]!.transport == .unix && below(3) == 0
            let request = Request.openSession(timeoutMilliseconds: UInt32(200 + below(2_800)),
                                              flags: keep ? .keepOnDisconnect : [])
            outputs = send(request, on: connection, &context)
        case 13..<16:
            guard let connection = someConnection(withSession: true) else { return }
            outputs = send(.closeSession, on: connection, &context)
        case 16..<21:
            guard let connection = someConnection() else { return }
            engine.connectionClosed(connection, now: harness.now)
            outputs = engine.takeOutputs()
            try dropped(connection)
        case 21..<25:
            let live = sessions.keys.sorted()
            guard !live.isEmpty else { return }
            let sessionID = pick(live)
            // Mostly a detached session onto a fresh connection; sometimes a takeover.
            let target: ConnectionID
            if let free = someConnection(withSession: false), below(2) == 0 {
                target = free
            } else {
                _ = try absorbOutside(connect(transport: .tcp))
                target = nextConnection - 1
            }
            context.resumed = (sessionID, Array(engine.sessions[sessionID]?.queuedEvents ?? []))
            var secret = sessions[sessionID]!.secret
            if below(10) == 0 { secret.low &+= 1 }
            outputs = send(.resumeSession(sessionID: sessionID, secret: secret), on: target, &context)
        case 25..<47:
            guard let connection = someConnection(withSession: true) else { return }
            outputs = send(randomCreate(), on: connection, &context)
        case 47..<55:
            guard let connection = someConnection(withSession: true) else { return }
            outputs = send(.delete(path: pick(paths), expectedVersion: randomVersion()), on: connection, &context)
        case 55..<63:
            guard let connection = someConnection(withSession: true) else { return }
            outputs = send(.set(path: pick(paths), data: [UInt8(below(256))], expectedVersion: randomVersion()),
                           on: connection, &context)
        case 63..<80:
            guard let connection = someConnection(withSession: true) else { return }
            let path = pick(paths), watch = below(10) < 8
            let request: Request = switch below(3) {
            case 0: .exists(path: path, watch: watch)
            case 1: .get(path: path, watch: watch)
            default: .children(path: path, watch: watch)
            }
            outputs = send(request, on: connection, &context)
        case 80..<85:
            guard let connection = someConnection(withSession: true) else { return }
            outputs = send(.multi((0..<(1 + below(3))).map { _ in randomMultiOperation() }), on: connection, &context)
        case 85..<91:
            guard let connection = someConnection(withSession: true) else { return }
            outputs = send(.ping, on: connection, &context)
        default:
            harness.now = harness.now.advanced(by: below(12) == 0 ? UInt64(500 + below(2_500)) : UInt64(1 + below(150)))
            engine.tick(now: harness.now)
            outputs = engine.takeOutputs()
        }
        try check(outputs, context)
    }

    // MARK: Actions

    @discardableResult
    private func connect(transport: TransportKind? = nil) -> [EngineOutput] {
        let connection = nextConnection
        nextConnection += 1
        let kind = transport ?? (below(2) == 0 ? .unix : .tcp)
        guard engine.connectionOpened(connection, transport: kind, now: harness.now) else { return engine.takeOutputs() }
        connections[connection] = (kind, nil)
        engine.handle(.hello(version: ProtocolVersion.current, clientName: "sim-\(connection)"), requestID: 0,
                      from: connection, now: harness.now)
        if kind == .tcp {
            engine.handle(.authenticate(token: EngineHarness.tcpToken), requestID: 0, from: connection, now: harness.now)
        }
        return engine.takeOutputs()
    }

    /// Outputs of a helper action inside a step (a connect before a resume): nothing but the hello reply.
    private func absorbOutside(_ outputs: [EngineOutput]) throws -> [EngineOutput] {
        for output in outputs {
            guard case .send(_, .reply(let reply)) = output, reply.opcode == .hello || reply.opcode == .authenticate,
                  case .success = reply.result else {
                throw fail("unexpected output of a connect: \(output)")
            }
        }
        return outputs
    }

    private func someConnection(withSession: Bool? = nil) -> ConnectionID? {
        let candidates = connections.keys.sorted().filter { connection in
            guard let withSession else { return true }
            return (connections[connection]!.session != nil) == withSession
        }
        return candidates.isEmpty ? nil : pick(candidates)
    }

    private func send(_ request: Request, on connection: ConnectionID, _ context: inout StepContext) -> [EngineOutput] {
        // Any frame is a heartbeat for the session the connection speaks for.
        if let sessionID = connections[connection]?.session { sessions[sessionID]?.lastHeardMilliseconds = harness.now.monotonicMilliseconds }
        let (requestID, outputs) = harness.send(request, on: connection)
        context.request = (connection, requestID, request)
        return outputs
    }

    private func randomVersion() -> Int32 { below(3) == 0 ? Int32(below(3)) : anyVersion }

    private func randomMode() -> CreateMode {
        let kind: NodeKind = pick([.persistent, .persistent, .ephemeral, .container])
        return CreateMode(kind: kind, sequential: false)
    }

    private func randomCreate() -> Request {
        if below(3) == 0 {
            return .create(path: pick(sequentialPrefixes), data: [UInt8(below(256))],
                           mode: CreateMode(kind: pick([.persistent, .ephemeral, .container]), sequential: true))
        }
        return .create(path: pick(paths), data: [UInt8(below(256))], mode: randomMode())
    }

    private func randomMultiOperation() -> MultiOperation {
        switch below(4) {
        case 0:
            if case .create(let path, let data, let mode) = randomCreate() { return .create(path: path, data: data, mode: mode) }
            preconditionFailure()
        case 1: return .delete(path: pick(paths), expectedVersion: randomVersion())
        case 2: return .set(path: pick(paths), data: [UInt8(below(256))], expectedVersion: randomVersion())
        default: return .check(path: pick(paths), expectedVersion: randomVersion())
        }
    }

    /// The model's side of a connection going away.
    private func dropped(_ connection: ConnectionID) throws {
        guard let state = connections.removeValue(forKey: connection), let sessionID = state.session,
              var session = sessions[sessionID], session.connection == connection else { return }
        if state.transport == .unix && !session.keepOnDisconnect {
            try ended(sessionID)
        } else {
            session.connection = nil
            session.queuedChecked = 0
            sessions[sessionID] = session
        }
    }

    private func ended(_ sessionID: UInt64) throws {
        guard let session = sessions.removeValue(forKey: sessionID) else { return }
        sessionsEnded += 1
        if let connection = session.connection, connections[connection]?.session == sessionID {
            connections[connection]!.session = nil
        }
        if namespace.session(sessionID) != nil || engine.sessions[sessionID] != nil {
            throw fail("session \(sessionID) should have ended")
        }
        if !namespace.ephemeralNodes(of: sessionID).isEmpty {
            throw fail("ephemerals of ended session \(sessionID) remain: \(namespace.ephemeralNodes(of: sessionID).sorted())")
        }
    }

    // MARK: Checks

    private func nodeStats() -> [String: Stat] {
        var stats: [String: Stat] = [:]
        for path in paths + ["/", "/s/c"] { if let node = namespace.node(at: path) { stats[path] = node.stat } }
        for parent in ["/s", "/s/a", "/s/c"] {
            for name in namespace.childNames(of: parent) ?? [] {
                let path = NamespacePath.child(name, of: parent)
                stats[path] = namespace.node(at: path)!.stat
            }
        }
        return stats
    }

    private func check(_ outputs: [EngineOutput], _ context: StepContext) throws {
        let after = nodeStats()
        let transactionAfter = namespace.transactionCurrent
        guard transactionAfter >= context.transactionBefore else { throw fail("transaction counter went back") }
        var fired: [UInt64: [(type: WatchEventType, path: String)]] = [:]
        var newRegistrations: [(UInt64, Registration)] = []
        var replyIndex: Int?
        var expiredEvents: Set<UInt64> = []
        let sessionsBefore = Set(sessions.keys)

        for (index, output) in outputs.enumerated() {
            switch output {
            case .persist(let record):
                persisted.append(record)
            case .close(let connection):
                // Only a resume takes a connection away from this side.
                guard context.resumed != nil else { throw fail("unexpected close of \(connection)") }
                connections[connection] = nil
            case .send(let connection, .reply(let reply)):
                if let request = context.request, reply.requestID == request.requestID, connection == request.connection {
                    guard replyIndex == nil else { throw fail("two replies to request \(reply.requestID)") }
                    replyIndex = index
                    try replied(reply, to: request.request, on: connection, newRegistrations: &newRegistrations, context)
                } else if reply.opcode != .hello && reply.opcode != .authenticate {
                    throw fail("reply nobody asked for: \(reply)")
                }
            case .send(let connection, .event(let event)):
                if let replyIndex, context.resumed == nil {
                    throw fail("event \(event) after the reply at \(replyIndex)")
                }
                switch event {
                case .watch(let type, let path):
                    // Sent from the queue after a resume: checked when it was queued.
                    if context.resumed != nil && replyIndex != nil { continue }
                    guard let sessionID = connections[connection]?.session else {
                        throw fail("watch event \(type) \(path) to \(connection), which has no session")
                    }
                    fired[sessionID, default: []].append((type, path))
                case .sessionExpired(let sessionID):
                    guard connections[connection]?.session == sessionID else {
                        throw fail("sessionExpired \(sessionID) to \(connection), which does not speak for it")
                    }
                    expiredEvents.insert(sessionID)
                case .lockLost, .lockSuspended, .revocationRequested, .lockResumed:
                    throw fail("lock event without locks: \(event)")
                }
            }
        }
        if let request = context.request, replyIndex == nil { throw fail("no reply to \(request.request.opcode)") }
        if let resumed = context.resumed, let replyIndex, case .success = replies(outputs, to: context.request!.connection).first?.result {
            let sentAfter = outputs[(replyIndex + 1)...].compactMap { output -> Event? in
                if case .send(_, .event(let event)) = output { return event } else { return nil }
            }
            guard sentAfter == resumed.queued else { throw fail("after the resume: \(sentAfter), queued: \(resumed.queued)") }
        }

        // Events queued for detached sessions in this step count as fired now.
        for (sessionID, session) in sessions where session.connection == nil {
            guard let queue = engine.sessions[sessionID]?.queuedEvents else { continue } // ended: checked below
            guard queue.count >= session.queuedChecked else { throw fail("queue of \(sessionID) shrank while detached") }
            for event in queue.dropFirst(session.queuedChecked) {
                guard case .watch(let type, let path) = event else { throw fail("queued \(event)") }
                queuedEvents += 1
                fired[sessionID, default: []].append((type, path))
            }
            sessions[sessionID]!.queuedChecked = queue.count
        }

        // Sessions: expiry exactly at the deadline, announced to an attached connection.
        let now = harness.now.monotonicMilliseconds
        for sessionID in sessions.keys.sorted() {
            let session = sessions[sessionID]!
            let alive = namespace.session(sessionID) != nil
            let due = session.lastHeardMilliseconds + session.timeoutMilliseconds <= now
            if alive && due { throw fail("session \(sessionID) outlived its timeout") }
            if !alive && !due {
                // The only other way: a detached session whose event queue overflowed.
                let couldOverflow = session.connection == nil
                    && session.queuedChecked + session.registrations.count > Self.detachedSessionEventsMax
                guard couldOverflow else { throw fail("session \(sessionID) ended early") }
            }
            if !alive {
                if let connection = session.connection, connections[connection] != nil, due,
                   !expiredEvents.contains(sessionID) {
                    throw fail("session \(sessionID) expired without telling connection \(connection)")
                }
                try ended(sessionID)
            }
        }
        for sessionID in expiredEvents where sessions[sessionID] != nil { throw fail("sessionExpired for a live session") }

        // Watches: each event matches a registration and a change of this step; each definite change fires.
        for (sessionID, events) in fired {
            guard sessionsBefore.contains(sessionID) else { throw fail("event for unknown session \(sessionID)") }
            for (type, path) in events {
                watchEvents += 1
                try matchChange(type, path, context, after: after, transactionAfter: transactionAfter)
                // A session that ended later in this step took its registrations with it.
                guard var session = sessions[sessionID] else { continue }
                let data = Registration(path: path, children: false), children = Registration(path: path, children: true)
                let removed: Bool
                switch type {
                case .created, .dataChanged: removed = session.registrations.remove(data) != nil
                case .childrenChanged: removed = session.registrations.remove(children) != nil
                case .deleted:
                    let a = session.registrations.remove(data) != nil, b = session.registrations.remove(children) != nil
                    removed = a || b
                }
                guard removed else { throw fail("\(type) \(path) fired for session \(sessionID) without a registration") }
                sessions[sessionID] = session
            }
        }
        for (sessionID, session) in sessions where sessionsBefore.contains(sessionID) {
            for registration in session.registrations {
                if mustHaveFired(registration, context, after: after) {
                    throw fail("\(registration) of session \(sessionID) did not fire for a change of this step")
                }
            }
        }
        for (sessionID, registration) in newRegistrations { sessions[sessionID]?.registrations.insert(registration) }

        // No ephemeral outlives its session.
        for (path, stat) in after where stat.kind == .ephemeral {
            guard sessions[stat.ephemeralOwner] != nil, engine.sessions[stat.ephemeralOwner] != nil else {
                throw fail("ephemeral \(path) of ended session \(stat.ephemeralOwner)")
            }
        }
        guard namespace.sessionCount == sessions.count, engine.sessionCount == sessions.count else {
            throw fail("\(namespace.sessionCount) sessions in the namespace, \(engine.sessionCount) in the engine, \(sessions.count) in the model")
        }
    }

    private func replied(_ reply: Reply, to request: Request, on connection: ConnectionID,
                         newRegistrations: inout [(UInt64, Registration)], _ context: StepContext) throws {
        guard reply.opcode == request.opcode else { throw fail("reply opcode \(reply.opcode) to \(request.opcode)") }
        let sessionID = connections[connection]?.session
        switch (request, reply.result) {
        case (.openSession(_, let flags), .success(.session(let id, let secret, let timeout))):
            guard sessionID == nil else { throw fail("second session opened on \(connection)") }
            sessions[id] = SessionModel(secret: secret, timeoutMilliseconds: UInt64(timeout),
                                        transport: connections[connection]!.transport,
                                        keepOnDisconnect: flags.contains(.keepOnDisconnect), connection: connection,
                                        lastHeardMilliseconds: harness.now.monotonicMilliseconds)
            connections[connection]!.session = id
        case (.closeSession, .success):
            guard let sessionID else { throw fail("closeSession succeeded without a session") }
            try ended(sessionID)
        case (.resumeSession(let id, let secret), .success):
            guard var session = sessions[id], session.secret == secret else { throw fail("resume of \(id) succeeded") }
            if let previous = session.connection { connections[previous]?.session = nil }
            session.connection = connection
            session.queuedChecked = 0
            session.lastHeardMilliseconds = harness.now.monotonicMilliseconds
            resumes += 1
            sessions[id] = session
            connections[connection]!.session = id
        case (.resumeSession(let id, let secret), .failure(let error)):
            let expected: ErrorCode = sessions[id] == nil ? .sessionExpired : sessions[id]!.secret != secret ? .sessionSecretMismatch : .ok
            guard error.code == expected else { throw fail("resume of \(id) failed with \(error), expected \(expected)") }
        case (.create, .success(.created(let path, let stat))):
            try transaction(stat.createdTransaction, of: "create \(path)")
            try sequential(path, request: request)
        case (.set(let path, _, _), .success(.stat(let stat))):
            try transaction(stat.modifiedTransaction, of: "set \(path)")
        case (.multi(let operations), .success(.multi(let results))):
            guard results.count == operations.count else { throw fail("multi results \(results.count) for \(operations.count)") }
            for (operation, result) in zip(operations, results) {
                switch (operation, result) {
                case (.create(_, _, let mode), .created(let path, let stat)):
                    try transaction(stat.createdTransaction, of: "multi create \(path)")
                    if mode.sequential { try sequenceAdvanced(path) }
                case (.set(let path, _, _), .set(let stat)):
                    try transaction(stat.modifiedTransaction, of: "multi set \(path)")
                case (.delete, .deleted), (.check, .checked):
                    break
                default:
                    throw fail("multi result \(result) for \(operation)")
                }
            }
        case (.exists(let path, true), .success), (.get(let path, true), .success):
            guard let sessionID else { throw fail("read succeeded without a session") }
            newRegistrations.append((sessionID, Registration(path: path, children: false)))
        case (.children(let path, true, _, _), .success):
            guard let sessionID else { throw fail("read succeeded without a session") }
            newRegistrations.append((sessionID, Registration(path: path, children: true)))
        case (_, .failure(let error)):
            let allowed: Set<ErrorCode> = [.noNode, .nodeExists, .badVersion, .notEmpty, .ephemeralParent, .sessionRequired,
                                           .sessionExpired, .sessionAlreadyOpen]
            guard allowed.contains(error.code) else { throw fail("\(request.opcode) failed with \(error)") }
            if error.code == .sessionRequired || error.code == .sessionExpired, sessionID != nil {
                throw fail("\(error.code) on a connection with session \(sessionID!)")
            }
        default:
            break
        }
    }

    private func transaction(_ value: UInt64, of what: String) throws {
        guard value > lastTransaction else { throw fail("\(what): zxid \(value) after \(lastTransaction)") }
        guard value <= namespace.transactionCurrent else { throw fail("\(what): zxid \(value) from the future") }
        lastTransaction = value
    }

    private func sequential(_ path: String, request: Request) throws {
        guard case .create(_, _, let mode) = request, mode.sequential else { return }
        try sequenceAdvanced(path)
    }

    private func sequenceAdvanced(_ path: String) throws {
        let parent = NamespacePath.parent(of: path)
        guard let suffix = UInt64(path.suffix(NamespacePath.sequenceDigits)),
              let parentNode = namespace.node(at: parent) else { return }
        let key = SequenceKey(parent: parent, parentCreatedTransaction: parentNode.stat.createdTransaction)
        if let last = lastSequence[key], suffix <= last { throw fail("sequence \(path) after \(last)") }
        lastSequence[key] = suffix
    }

    /// An event must match a change of its kind to its path in this step.
    private func matchChange(_ type: WatchEventType, _ path: String, _ context: StepContext,
                             after: [String: Stat], transactionAfter: UInt64) throws {
        let before = context.before[path], now = after[path], since = context.transactionBefore
        let changed = transactionAfter > since
        let matches: Bool = switch type {
        case .created: now.map { $0.createdTransaction > since } ?? (before == nil && changed)
        case .deleted: before != nil && (now == nil || now!.createdTransaction > since)
        case .dataChanged: now.map { $0.modifiedTransaction > since } ?? (before != nil && changed)
        case .childrenChanged: now.map { $0.childrenTransaction > since } ?? (before != nil && changed)
        }
        if !matches { throw fail("\(type) \(path) fired, but no such change happened in this step") }
    }

    /// A registration that a change of this step definitely fires.
    private func mustHaveFired(_ registration: Registration, _ context: StepContext, after: [String: Stat]) -> Bool {
        let before = context.before[registration.path], now = after[registration.path], since = context.transactionBefore
        if registration.children {
            guard before != nil else { return false }
            guard let now else { return true }
            return now.childrenTransaction > since || now.createdTransaction > since
        }
        switch (before, now) {
        case (nil, .some), (.some, nil): return true
        case (.some, .some(let now)): return now.modifiedTransaction > since || now.createdTransaction > since
        case (nil, nil): return false
        }
    }

    // MARK: The end of a run

    private func finish() throws {
        step += 1
        let live = namespace.snapshot().persistentNodes()
        let recovered = try Engine(configuration: engine.configuration, now: harness.now, random: SeededGenerator(seed: seed ^ 1),
                                   recoveringFrom: nil, records: persisted)
        let replayed = recovered.namespace.snapshot().persistentNodes()
        guard Set(live.keys) == Set(replayed.keys) else {
            throw fail("replay: nodes \(Set(live.keys).symmetricDifference(replayed.keys).sorted()) differ")
        }
        for (path, node) in live {
            let other = replayed[path]!
            let same = node.data == other.data && node.stat.version == other.stat.version
                && node.stat.createdTransaction == other.stat.createdTransaction
                && node.stat.modifiedTransaction == other.stat.modifiedTransaction
                && node.stat.createdMilliseconds == other.stat.createdMilliseconds
                && node.stat.modifiedMilliseconds == other.stat.modifiedMilliseconds
                && node.stat.kind == other.stat.kind && node.stat.childrenCount == other.stat.childrenCount
            guard same else { throw fail("replay: \(path) is \(other), live \(node)") }
            guard other.sequenceNext >= node.sequenceNext else {
                throw fail("replay: sequence of \(path) restarts at \(other.sequenceNext), live is at \(node.sequenceNext)")
            }
        }
        guard recovered.namespace.transactionCurrent >= namespace.transactionCurrent else {
            throw fail("replay: zxid restarts at \(recovered.namespace.transactionCurrent), live is at \(namespace.transactionCurrent)")
        }
        try shutDown()
    }

    /// The daemon stops: every open connection gets its goodbye and a close, nothing after it, and
    /// every session (attached or detached) ends with its ephemerals.
    private func shutDown() throws {
        engine.shutdown(now: harness.now)
        var closed: Set<ConnectionID> = []
        for output in engine.takeOutputs() {
            switch output {
            case .close(let connection):
                closed.insert(connection)
            case .send(let connection, let message):
                if closed.contains(connection) { throw fail("shutdown: \(message) after the close of \(connection)") }
                guard case .reply(let reply) = message, case .failure(let error) = reply.result, error.code == .shuttingDown else {
                    throw fail("shutdown: \(message) to \(connection)")
                }
            case .persist:
                break
            }
        }
        guard closed == Set(connections.keys) else { throw fail("shutdown closed \(closed.sorted()), open were \(connections.keys.sorted())") }
        for sessionID in sessions.keys where !namespace.ephemeralNodes(of: sessionID).isEmpty {
            throw fail("shutdown: ephemerals of \(sessionID) remain")
        }
        guard namespace.sessionCount == 0, engine.sessionCount == 0, engine.connectionCount == 0 else {
            throw fail("shutdown left \(namespace.sessionCount) sessions, \(engine.connectionCount) connections")
        }
    }
}

final class EngineNamespaceSimulationTests: XCTestCase {
    func testRandomClientsAgainstTheEngineKeepTheNamespaceGuarantees() {
        let seeds = simulationSeeds(runsVariable: "BATON_ENGINE_SIMULATION_RUNS", seedVariable: "BATON_ENGINE_SIMULATION_SEED",
                                    defaultRuns: 150, firstSeed: 0xA_0000)
        let steps = ProcessInfo.processInfo.environment["BATON_ENGINE_SIMULATION_STEPS"].flatMap(Int.init) ?? 400
        var events = 0, ended = 0, resumes = 0, queued = 0
        for seed in seeds {
            let simulation = EngineNamespaceSimulation(seed: seed)
            do {
                try simulation.run(steps: steps)
            } catch {
                return XCTFail("\(error) (rerun: BATON_ENGINE_SIMULATION_SEED=\(seed))")
            }
            events += simulation.watchEvents
            ended += simulation.sessionsEnded
            resumes += simulation.resumes
            queued += simulation.queuedEvents
        }
        print("engine namespace simulation: \(seeds.count) runs, \(events) watch events (\(queued) queued while detached), \(resumes) resumes, \(ended) sessions ended")
        // The runs exercised what they check.
        XCTAssertGreaterThan(events, seeds.count)
        XCTAssertGreaterThan(ended, seeds.count)
        XCTAssertGreaterThan(resumes, seeds.count)
    }
}
