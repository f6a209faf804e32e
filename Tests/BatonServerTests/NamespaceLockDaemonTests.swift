import BatonProtocol
import BatonTestSupport
import Dispatch
import Foundation
import XCTest

/// The namespace, lock and session behaviour of the real `batond` over its sockets, on the embedded
/// store; `NamespaceLockZooKeeperDaemonTests` runs every test again on a ZooKeeper sidecar. (The
/// transport and lifecycle tests, which do not depend on the store, are in `DaemonTests`.)
class NamespaceLockDaemonTests: StoreDaemonTestCase {
    // MARK: Throughput and concurrency

    func testThousandPipelinedRequestsAreAnsweredInOrder() throws {
        let daemon = try startDaemon()
        let connection = try daemon.connect()
        try connection.handshake()
        _ = try connection.callSuccessfully(.create(path: "/pipeline", data: [], mode: .persistent))
        var batch: [UInt8] = []
        var expected: [(UInt32, String)] = []
        for index in 0..<1_000 {
            let requestID = connection.takeRequestID()
            let path = "/pipeline/n-\(index)"
            batch += Codec.encodeRequest(.create(path: path, data: Array(path.utf8), mode: .persistent), requestID: requestID)
            expected.append((requestID, path))
        }
        try connection.sendRaw(batch)
        for (requestID, path) in expected {
            let reply = try connection.receiveReply()
            XCTAssertEqual(reply.requestID, requestID)
            XCTAssertEqual(try reply.result.get(), .created(path: path, stat: try createdStat(reply)))
        }
        guard case .children(_, let names, _) = try connection.callSuccessfully(.children(path: "/pipeline", watch: false)) else {
            return XCTFail("children answered something else")
        }
        XCTAssertEqual(names.count, 1_000)
    }

    private func createdStat(_ reply: Reply) throws -> Stat {
        guard case .success(.created(_, let stat)) = reply.result else {
            throw TestSupportError.unexpected("expected created, got \(reply.result)")
        }
        return stat
    }

    func testTwoHundredConcurrentConnectionsEachDoWork() throws {
        let daemon = try startDaemon()
        let setup = try daemon.connect()
        try setup.handshake()
        _ = try setup.callSuccessfully(.create(path: "/concurrent", data: [], mode: .persistent))
        let connections = try (0..<200).map { index -> RawConnection in
            let connection = try daemon.connect()
            try connection.handshake(clientName: "client-\(index)")
            return connection
        }
        let failures = FailureList()
        DispatchQueue.concurrentPerform(iterations: connections.count) { index in
            let connection = connections[index]
            do {
                let path = "/concurrent/c-\(index)"
                _ = try connection.callSuccessfully(.create(path: path, data: [], mode: .ephemeral))
                for round in 0..<10 {
                    let data = Array("\(index)-\(round)".utf8)
                    _ = try connection.callSuccessfully(.set(path: path, data: data, expectedVersion: Int32(round)))
                    guard case .data(let stat, let read) = try connection.callSuccessfully(.get(path: path, watch: false)),
                          read == data, stat.version == Int32(round + 1) else {
                        throw TestSupportError.unexpected("connection \(index) read back something else in round \(round)")
                    }
                }
            } catch {
                failures.append("connection \(index): \(error)")
            }
        }
        XCTAssertEqual(failures.all, [])
        guard case .children(_, let names, _) = try setup.callSuccessfully(.children(path: "/concurrent", watch: false)) else {
            return XCTFail("children answered something else")
        }
        XCTAssertEqual(Set(names), Set((0..<200).map { "c-\($0)" }))
    }

    // MARK: Sessions

    func testAbruptCloseEndsTheSessionAndDeletesItsEphemeralsAtOnce() throws {
        let daemon = try startDaemon()
        let owner = try daemon.connect()
        try owner.handshake()
        _ = try owner.callSuccessfully(.create(path: "/owned", data: [], mode: .ephemeral))
        let watcher = try daemon.connect()
        try watcher.handshake()
        guard case .exists(let stat?) = try watcher.callSuccessfully(.exists(path: "/owned", watch: true)) else {
            return XCTFail("the ephemeral node should exist")
        }
        XCTAssertNotEqual(stat.ephemeralOwner, 0)

        owner.close()  // no closeSession: the process "died"

        XCTAssertEqual(try watcher.nextEvent(), .watch(type: .deleted, path: "/owned"))
        XCTAssertEqual(try watcher.callSuccessfully(.exists(path: "/owned", watch: false)), .exists(nil))
    }

    func testLockHeldByAKilledProcessPassesToTheNextWaiter() throws {
        let daemon = try startDaemon()
        let holder = try daemon.connect()
        try holder.handshake(clientName: "doomed")
        guard case .granted(_, let firstToken) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/k"))) else {
            return XCTFail("the first acquire should be granted")
        }
        let waiter = try daemon.connect()
        try waiter.handshake(clientName: "next")
        setCloseOnExec(waiter.descriptor)
        let acquireID = try waiter.send(.acquire(LockRequest(path: "/locks/k")))

        // Another process takes over the holder's socket; this process lets go of its copy.
        let child = try spawnHolding(holder.descriptor)
        holder.close()
        XCTAssertFalse(waiter.isReadable(timeoutSeconds: 0.05), "the lock is still held by the child")

        kill(child, SIGKILL)
        var status: Int32 = 0
        waitpid(child, &status, 0)

        let reply = try waiter.receiveReply()
        XCTAssertEqual(reply.requestID, acquireID)
        guard case .success(.granted(_, let secondToken)) = reply.result else {
            return XCTFail("the waiter should be granted once the holder died, got \(reply.result)")
        }
        XCTAssertGreaterThan(secondToken, firstToken)
    }

    func testSessionExpiresWhenHeartbeatsStopOverTCP() throws {
        let daemon = try startDaemon(TestDaemon.Options(listensOnTCP: true, arguments: ["--session-timeout-min-ms", "100"]))
        let quiet = try daemon.connectTCP()
        let session = try quiet.handshake(sessionTimeoutMilliseconds: 300)
        XCTAssertEqual(session.timeoutMilliseconds, 300)
        _ = try quiet.callSuccessfully(.create(path: "/expiring", data: [], mode: .ephemeral))
        let watcher = try daemon.connect()
        try watcher.handshake()
        XCTAssertNotEqual(try watcher.callSuccessfully(.exists(path: "/expiring", watch: true)), .exists(nil))

        // `quiet` sends nothing more, but keeps its connection open.
        XCTAssertEqual(try watcher.nextEvent(timeoutSeconds: 20), .watch(type: .deleted, path: "/expiring"))
        XCTAssertEqual(try quiet.nextEvent(timeoutSeconds: 20), .sessionExpired(sessionID: session.sessionID))
        // The connection outlives its session: requests that need one fail, the rest still work.
        XCTAssertNotNil(try quiet.call(.create(path: "/after", data: [], mode: .persistent)).result.failureCode)
        XCTAssertEqual(try quiet.callSuccessfully(.ping), .empty)
    }

    func testTCPSessionResumesWithItsIDAndSecret() throws {
        let daemon = try startDaemon(TestDaemon.Options(listensOnTCP: true))
        let first = try daemon.connectTCP()
        let session = try first.handshake(sessionTimeoutMilliseconds: 30_000)
        _ = try first.callSuccessfully(.create(path: "/resumable", data: [], mode: .ephemeral))
        first.closeAbruptly()

        let impostor = try daemon.connectTCP()
        try impostor.hello()
        var wrongSecret = session.secret
        wrongSecret.low ^= 1
        let refused = try impostor.call(.resumeSession(sessionID: session.sessionID, secret: wrongSecret))
        XCTAssertEqual(failureCode(refused), .sessionSecretMismatch)

        let second = try daemon.connectTCP()
        try second.hello()
        guard case .resumed = try second.callSuccessfully(.resumeSession(sessionID: session.sessionID, secret: session.secret)) else {
            return XCTFail("resume should succeed")
        }
        guard case .exists(let stat?) = try second.callSuccessfully(.exists(path: "/resumable", watch: false)) else {
            return XCTFail("the resumed session's ephemeral node should still exist")
        }
        XCTAssertEqual(stat.ephemeralOwner, session.sessionID)
    }

    func testSIGTERMAnswersAWaitingAcquireBeforeTheGoodbye() throws {
        let daemon = try startDaemon()
        let holder = try daemon.connect()
        try holder.handshake()
        _ = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/shutdown")))
        let waiter = try daemon.connect()
        try waiter.handshake()
        try waiter.send(.acquire(LockRequest(path: "/locks/shutdown")), requestID: 77)
        _ = try waiter.callSuccessfully(.ping)  // the acquire is queued behind the holder by now
        daemon.kill(SIGTERM)
        XCTAssertEqual(daemon.waitForExit(timeoutSeconds: 20), .exited(0))
        let replies = try waiter.readUntilClosed().compactMap { message -> Reply? in
            if case .reply(let reply) = message { return reply }
            return nil
        }
        XCTAssertEqual(replies.map(\.requestID), [77, 0], "the waiting acquire is answered, then the goodbye")
        XCTAssertEqual(replies.map { failureCode($0) }, [.shuttingDown, .shuttingDown])
    }

    // MARK: Helpers

    private func setCloseOnExec(_ descriptor: Int32) {
        _ = fcntl(descriptor, F_SETFD, fcntl(descriptor, F_GETFD) | FD_CLOEXEC)
    }

    /// Starts `sleep` with `descriptor` inherited (it is the only thing keeping the connection open
    /// once this process closes its copy).
    private func spawnHolding(_ descriptor: Int32) throws -> pid_t {
        _ = fcntl(descriptor, F_SETFD, fcntl(descriptor, F_GETFD) & ~FD_CLOEXEC)
        var child: pid_t = 0
        let arguments: [UnsafeMutablePointer<CChar>?] = ["/bin/sleep", "600"].map { (text: String) in strdup(text) } + [nil]
        defer { arguments.forEach { free($0) } }
        let result = posix_spawn(&child, "/bin/sleep", nil, nil, arguments, environ)
        guard result == 0 else { throw TestSupportError.system("posix_spawn: \(String(cString: strerror(result)))") }
        return child
    }
}

/// The same tests on a sidecar over one standalone ZooKeeper server for the class.
final class NamespaceLockZooKeeperDaemonTests: NamespaceLockDaemonTests {
    static let shared = SharedEnsemble(members: 1)
    override class var zooKeeper: SharedEnsemble? { shared }

    override class func tearDown() {
        shared.stop()
        super.tearDown()
    }

    // Linux test discovery finds a subclass by the tests it declares (then runs the inherited ones
    // too): this one's own test keeps the class, and so the whole suite, on this store.
    func testHelloNamesTheZooKeeperStore() throws {
        let client = try startDaemon().connect()
        guard case .hello(_, let serverName, _) = try client.callSuccessfully(.hello(version: ProtocolVersion.current, clientName: "t")) else {
            return XCTFail("hello")
        }
        XCTAssertTrue(serverName.contains(" store=zookeeper://"), serverName)
    }
}

private extension Result where Failure == ReplyError {
    var failureCode: ErrorCode? {
        if case .failure(let error) = self { return error.code }
        return nil
    }
}

/// Failures gathered from several threads.
private final class FailureList: @unchecked Sendable {
    private let lock = NSLock()
    private var failures: [String] = []
    func append(_ failure: String) { lock.withLock { failures.append(failure) } }
    var all: [String] { lock.withLock { failures } }
}
