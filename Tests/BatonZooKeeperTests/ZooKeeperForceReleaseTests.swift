import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// `forceRelease` over the ZooKeeper store (PROTOCOL.md §12.13, §16): the holder may be on another sidecar.
final class ZooKeeperForceReleaseTests: XCTestCase {
    static let shared = SharedEnsemble()
    var ensemble: ZooKeeperEnsemble { get throws { try Self.shared.ensemble() } }

    override class func tearDown() {
        shared.stop()
        super.tearDown()
    }

    private func sidecar(chroot: String) throws -> TestDaemon {
        try TestDaemon.zooKeeperSidecar(store: "zookeeper://\(try ensemble.connectString)\(chroot)", sessionTimeoutMilliseconds: 4_000)
    }

    func testForceReleaseEndsAHoldOnAnotherSidecarAndGrantsTheNextWaiter() throws {
        let a = try sidecar(chroot: "/force"), b = try sidecar(chroot: "/force")
        let holder = try a.connect()
        try holder.handshake(clientName: "holder")
        guard case .granted(let node, let token) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/f"))) else {
            return XCTFail("not granted")
        }
        let waiter = try b.connect()
        try waiter.handshake(clientName: "waiter")
        let waitingID = try waiter.send(.acquire(LockRequest(path: "/locks/f")))
        let second = try b.connect()
        let secondSession = try second.handshake(clientName: "second")
        let secondID = try second.send(.acquire(LockRequest(path: "/locks/f")))
        // Both queued behind the holder (inspect reads ZooKeeper's queue).
        let deadline = Date().addingTimeInterval(10)
        while true {
            guard case .lockEntries(let entries) = try holder.callSuccessfully(.inspect(path: "/locks/f")) else { return XCTFail("inspect") }
            if entries.count == 3 { break }
            guard Date() < deadline else { return XCTFail("waiters never queued: \(entries)") }
            usleep(20_000)
        }

        let admin = try b.connect()
        try admin.handshake(clientName: "admin")
        // One session's wait, on this sidecar.
        XCTAssertEqual(try admin.callSuccessfully(.forceRelease(path: "/locks/f", sessionID: secondSession.sessionID)),
                       .forceReleased(ended: 1))
        let lost = try second.receiveReply()
        XCTAssertEqual(lost.requestID, secondID)
        guard case .failure(let error) = lost.result else { return XCTFail("\(lost)") }
        XCTAssertEqual(error.code, .lockLost)

        // Every current holder, whichever sidecar serves it.
        XCTAssertEqual(try admin.callSuccessfully(.forceRelease(path: "/locks/f", sessionID: 0)), .forceReleased(ended: 1))
        XCTAssertEqual(try holder.nextEvent(), .lockLost(node: node, token: token, reason: .nodeDeleted))
        let grant = try waiter.receiveReply()
        XCTAssertEqual(grant.requestID, waitingID)
        guard case .success(.granted(_, let nextToken)) = grant.result else { return XCTFail("\(grant)") }
        XCTAssertGreaterThan(nextToken, token)
        XCTAssertEqual(try admin.call(.forceRelease(path: "/locks/none", sessionID: 0)).result.failureCode, .noNode)
    }
}
