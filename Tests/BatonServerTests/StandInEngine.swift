import BatonEngine
import BatonProtocol
import BatonServer
import Foundation

/// What the stand-in engine saw, readable from the test thread.
final class EngineJournal: @unchecked Sendable {
    private let lock = NSLock()
    private var opened: [ConnectionID] = []
    private var closed: [ConnectionID] = []
    private var failures: [ErrorCode] = []
    private var expired: [ConnectionID] = []

    func recordOpened(_ connection: ConnectionID) { lock.withLock { opened.append(connection) } }
    func recordClosed(_ connection: ConnectionID) { lock.withLock { closed.append(connection) } }
    func recordFailure(_ code: ErrorCode) { lock.withLock { failures.append(code) } }
    func recordExpired(_ connection: ConnectionID) { lock.withLock { expired.append(connection) } }

    var openedConnections: [ConnectionID] { lock.withLock { opened } }
    var closedConnections: [ConnectionID] { lock.withLock { closed } }
    var decodeFailures: [ErrorCode] { lock.withLock { failures } }
    var expiredSessions: [ConnectionID] { lock.withLock { expired } }

    /// Polls until `condition` holds (the loop runs on another thread); false after `timeoutSeconds`.
    func wait(timeoutSeconds: Double = 10, until condition: (EngineJournal) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if condition(self) { return true }
            usleep(2_000)
        }
        return condition(self)
    }
}

/// A stand-in for the engine that exercises the shell alone: it answers each request from the
/// request itself, so transport tests do not depend on the namespace or the lock recipe.
/// - `hello`, `ping`: answered at once.
/// - `get(path: "/bytes/N")`: answered with N bytes of data (to fill a slow reader's queue).
/// - `set(path, data)`: answered with a stat whose `dataLength` is the size received (large frames).
/// - `acquire(wait: N)`: answered with `lockTimeout` after N ms, from `tick` (the timer).
/// - `get(path: "/stall/N")`: blocks the loop N ms, then answers (a request that takes long).
/// - `openSession(timeout)`: a session that expires `timeout` ms after the connection's last frame
///   (or its last `inputWaiting`), from `tick`; expiries are journaled.
/// - `closeSession`: answered, then the connection is closed by the engine.
final class StandInEngine: ServerEngine {
    private let journal: EngineJournal
    private var outputs: [EngineOutput] = []
    private var open: Set<ConnectionID> = []
    private var timeouts: [(deadline: UInt64, connection: ConnectionID, requestID: UInt32)] = []
    private var sessions: [ConnectionID: (timeout: UInt64, deadline: UInt64)] = [:]
    private let connectionsMax: Int

    init(journal: EngineJournal, connectionsMax: Int = 1_000) {
        self.journal = journal
        self.connectionsMax = connectionsMax
    }

    func connectionOpened(_ connection: ConnectionID, transport: TransportKind, now: Time) -> Bool {
        guard open.count < connectionsMax else {
            outputs.append(.send(connection, .reply(Reply(requestID: 0, opcode: .hello,
                                                          result: .failure(ReplyError(.tooManyConnections))))))
            outputs.append(.close(connection))
            return false
        }
        open.insert(connection)
        journal.recordOpened(connection)
        return true
    }

    func handle(_ request: Request, requestID: UInt32, from connection: ConnectionID, now: Time) {
        guard open.contains(connection) else { return }
        inputWaiting(on: connection, now: now)  // any frame is a heartbeat
        func reply(_ result: Result<ReplyBody, ReplyError>) {
            outputs.append(.send(connection, .reply(Reply(requestID: requestID, opcode: request.opcode, result: result))))
        }
        switch request {
        case .hello:
            reply(.success(.hello(version: ProtocolVersion.current, serverName: "stand-in", frameBytesMax: UInt32(Limits.default.frameBytesMax))))
        case .get(let path, _) where path.hasPrefix("/stall/"):
            usleep((UInt32(path.dropFirst("/stall/".count)) ?? 0) * 1_000)
            reply(.success(.data(stat: Stat(), data: [])))
        case .openSession(let timeout, _):
            sessions[connection] = (UInt64(timeout), now.monotonicMilliseconds + UInt64(timeout))
            reply(.success(.session(sessionID: UInt64(connection), secret: SessionSecret(high: 0, low: 0), timeoutMilliseconds: timeout)))
        case .get(let path, _):
            let count = Int(path.split(separator: "/").last ?? "") ?? 0
            var stat = Stat()
            stat.dataLength = UInt32(count)
            reply(.success(.data(stat: stat, data: [UInt8](repeating: 0x5A, count: count))))
        case .set(_, let data, _):
            var stat = Stat()
            stat.dataLength = UInt32(data.count)
            stat.version = Int32(data.reduce(0) { ($0 &+ Int($1)) & 0x7FFF_FFFF })
            reply(.success(.stat(stat)))
        case .acquire(let lock):
            timeouts.append((now.monotonicMilliseconds + UInt64(lock.waitMilliseconds), connection, requestID))
        case .closeSession:
            reply(.success(.empty))
            outputs.append(.close(connection))
        default:
            reply(.success(.empty))
        }
    }

    func decodeFailed(_ failure: DecodeFailure, from connection: ConnectionID, now: Time) {
        journal.recordFailure(failure.code)
        let opcode = failure.opcode.flatMap(Opcode.init(rawValue:)) ?? .hello
        outputs.append(.send(connection, .reply(Reply(requestID: failure.requestID ?? 0, opcode: opcode,
                                                      result: .failure(ReplyError(failure.code, failure.message))))))
        if failure.code.closesConnection { outputs.append(.close(connection)) }
    }

    func connectionClosed(_ connection: ConnectionID, now: Time) {
        guard open.remove(connection) != nil else { return }
        timeouts.removeAll { $0.connection == connection }
        sessions[connection] = nil
        journal.recordClosed(connection)
    }

    func inputWaiting(on connection: ConnectionID, now: Time) {
        guard let session = sessions[connection] else { return }
        sessions[connection]!.deadline = max(session.deadline, now.monotonicMilliseconds + session.timeout)
    }

    func tick(now: Time) {
        for (connection, session) in sessions where session.deadline <= now.monotonicMilliseconds {
            sessions[connection] = nil
            journal.recordExpired(connection)
            outputs.append(.send(connection, .event(.sessionExpired(sessionID: UInt64(connection)))))
        }
        let due = timeouts.filter { $0.deadline <= now.monotonicMilliseconds }
        timeouts.removeAll { $0.deadline <= now.monotonicMilliseconds }
        for timeout in due {
            outputs.append(.send(timeout.connection, .reply(Reply(requestID: timeout.requestID, opcode: .acquire,
                                                                  result: .failure(ReplyError(.lockTimeout))))))
        }
    }

    var nextDeadlineMilliseconds: UInt64? { (timeouts.map(\.deadline) + sessions.values.map(\.deadline)).min() }

    func shutdown(now: Time) {
        for connection in open.sorted() {
            outputs.append(.send(connection, .reply(Reply(requestID: 0, opcode: .hello,
                                                          result: .failure(ReplyError(.shuttingDown))))))
            outputs.append(.close(connection))
        }
    }

    func takeOutputs() -> [EngineOutput] {
        defer { outputs.removeAll() }
        return outputs
    }
}
