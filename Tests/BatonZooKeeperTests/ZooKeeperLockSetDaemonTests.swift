import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// `acquireAll` (PROTOCOL.md §12.14) over the ZooKeeper store: two sidecars on a real ensemble, sets in
/// opposite orders on each.
final class ZooKeeperLockSetDaemonTests: XCTestCase {
    static let shared = SharedEnsemble()

    override class func tearDown() {
        shared.stop()
        super.tearDown()
    }

    func sidecar(chroot: String) throws -> TestDaemon {
        try TestDaemon.zooKeeperSidecar(store: "zookeeper://\(try Self.shared.ensemble().connectString)\(chroot)",
                                        sessionTimeoutMilliseconds: 4_000)
    }

    func client(_ daemon: TestDaemon, _ name: String) throws -> RawConnection {
        let connection = try daemon.connect()
        try connection.handshake(clientName: name)
        return connection
    }

    func testSetsInOppositeOrdersOnTwoSidecarsEachGetEveryLock() throws {
        let a = try sidecar(chroot: "/sets"), b = try sidecar(chroot: "/sets")
        let first = try client(a, "first"), second = try client(b, "second")
        let set = { (paths: [String]) in
            Request.acquireAll(locks: paths.map { LockSetMember(path: $0) }, waitMilliseconds: LockRequest.waitForever,
                               leaseMilliseconds: 0)
        }
        guard case .grantedAll(let held) = try first.callSuccessfully(set(["/locks/p", "/locks/q"])) else {
            return XCTFail("the first set should be granted")
        }
        XCTAssertEqual(held.count, 2)
        let waitingID = try second.send(set(["/locks/q", "/locks/p"]))
        XCTAssertFalse(second.isReadable(timeoutSeconds: 0.3), "sidecar B must not answer while A's client holds the set")
        // B's set waits on /locks/p (first in path order) and so holds nothing yet: /locks/q is A's alone.
        XCTAssertEqual(try second.callSuccessfully(.checkToken(path: "/locks/q", token: held[1].token)), .tokenStatus(current: true))

        for hold in held { XCTAssertEqual(try first.callSuccessfully(.release(node: hold.node, token: hold.token)), .empty) }
        let reply = try second.receiveReply(timeoutSeconds: 10)
        XCTAssertEqual(reply.requestID, waitingID)
        guard case .success(.grantedAll(let next)) = reply.result else { return XCTFail("\(reply.result)") }
        XCTAssertEqual(next.map { String($0.node.prefix(8)) }, ["/locks/q", "/locks/p"], "in the request's order")
        XCTAssertGreaterThan(next[0].token, held[1].token)
        XCTAssertGreaterThan(next[1].token, held[0].token)
    }
}
