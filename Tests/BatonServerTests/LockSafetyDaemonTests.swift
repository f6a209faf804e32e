import BatonProtocol
import BatonTestSupport
import XCTest

/// Issue 8 as a hostile or careless client tries it against the real `batond`: no sequence of requests
/// ends another hold or wedges a lock (PROTOCOL.md §12.1, §12.6). On the embedded store here;
/// `LockSafetyZooKeeperDaemonTests` runs the same tests on a ZooKeeper sidecar.
class LockSafetyDaemonTests: StoreDaemonTestCase {
    private func grant(_ body: ReplyBody, file: StaticString = #filePath, line: UInt = #line) -> (node: String, token: UInt64)? {
        guard case .granted(let node, let token) = body else {
            XCTFail("expected a grant, got \(body)", file: file, line: line)
            return nil
        }
        return (node, token)
    }

    // MARK: Item 1

    func testAReplayedReleaseDoesNotEndTheNextHoldOnTheSamePath() throws {
        let daemon = try startDaemon()
        let client = try daemon.connect()
        try client.handshake()
        let first = try XCTUnwrap(grant(try client.callSuccessfully(.acquire(LockRequest(path: "/reuse/L")))))
        XCTAssertEqual(try client.callSuccessfully(.release(node: first.node, token: first.token)), .empty)
        XCTAssertEqual(try client.callSuccessfully(.delete(path: "/reuse/L", expectedVersion: anyVersion)), .empty)
        let second = try XCTUnwrap(grant(try client.callSuccessfully(.acquire(LockRequest(path: "/reuse/L")))))
        XCTAssertEqual(second.node, first.node, "the lock node came back: the path repeats")

        XCTAssertEqual(failureCode(try client.call(.release(node: first.node, token: first.token))), .lockLost)
        XCTAssertEqual(try client.callSuccessfully(.checkToken(path: "/reuse/L", token: second.token)),
                       .tokenStatus(current: true), "the second hold is intact")
        XCTAssertEqual(try client.callSuccessfully(.release(node: second.node, token: second.token)), .empty)
    }

    // MARK: Item 2

    /// The attack: a forged persistent waiter node, then a disconnect. Refused, so the holder
    /// keeps its hold (no false lockLost), the next acquirer is granted at the release, and `inspect`
    /// shows the truth.
    func testAForgedWaiterNodeIsRefusedAndCannotJamTheLock() throws {
        let daemon = try startDaemon()
        let holder = try daemon.connect()
        try holder.handshake(clientName: "holder")
        let held = try XCTUnwrap(grant(try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/P")))))
        let forger = try daemon.connect()
        try forger.handshake(clientName: "forger")
        let victim = try daemon.connect()
        let victimSession = try victim.handshake(clientName: "victim")
        // The victim's next waiter node would be r-<its session>-0000000001: the forger takes that name first.
        let hex = String(victimSession.sessionID, radix: 16)
        let victimHex = String(repeating: "0", count: 16 - hex.count) + hex
        XCTAssertEqual(failureCode(try forger.call(.create(path: "/locks/P/x-deadbeefdeadbeef-0000000000", data: [], mode: .persistent))),
                       .lockNodeReserved)
        XCTAssertEqual(failureCode(try forger.call(.create(path: "/locks/P/r-\(victimHex)-0000000001", data: [], mode: .ephemeral))),
                       .lockNodeReserved)
        XCTAssertEqual(failureCode(try forger.call(.delete(path: held.node, expectedVersion: anyVersion))), .lockNodeReserved)
        forger.closeAbruptly()

        let waitingID = try victim.send(.acquire(LockRequest(path: "/locks/P", kind: .shared)))
        XCTAssertEqual(try holder.callSuccessfully(.checkToken(path: "/locks/P", token: held.token)), .tokenStatus(current: true))
        guard case .lockEntries(let entries) = try holder.callSuccessfully(.inspect(path: "/locks/P")) else {
            return XCTFail("inspect answers entries")
        }
        XCTAssertEqual(entries.map(\.clientName), ["holder", "victim"])
        XCTAssertEqual(try holder.callSuccessfully(.release(node: held.node, token: held.token)), .empty)
        let reply = try victim.receiveReply()
        XCTAssertEqual(reply.requestID, waitingID)
        guard case .success(.granted) = reply.result else { return XCTFail("the victim is granted, got \(reply.result)") }
    }
}

/// The same tests on a sidecar over one standalone ZooKeeper server for the class.
final class LockSafetyZooKeeperDaemonTests: LockSafetyDaemonTests {
    static let shared = SharedEnsemble(members: 1)
    override class var zooKeeper: SharedEnsemble? { shared }

    override class func tearDown() {
        shared.stop()
        super.tearDown()
    }

    // Linux test discovery finds a subclass by the tests it declares (then runs the inherited ones
    // too): this one's own test keeps the class, and so the whole suite, on this store.
    func testTheSidecarServesFromZooKeeper() throws {
        let daemon = try startDaemon()
        let client = try daemon.connect()
        guard case .hello(_, let serverName, _) = try client.callSuccessfully(.hello(version: ProtocolVersion.current, clientName: "t")) else {
            return XCTFail("hello")
        }
        XCTAssertTrue(serverName.contains(" store=zookeeper://"), serverName)
    }
}
