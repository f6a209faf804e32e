import BatonLocks
import BatonProtocol
import BatonZooKeeper
import XCTest

/// The adapter over a fake ZooKeeper: what it promises the recipe when its ZooKeeper session is replaced.
final class ZooKeeperLockNamespaceTests: XCTestCase {
    /// ZooKeeper drops a lost session's watches without a word; the recipe waits on them. So each watch
    /// still armed through the old client fires once, as "look again" (never as a deletion).
    func testWatchesOfAReplacedClientFireOnceAsLookAgain() {
        let server = FakeZooKeeper()
        let old = FakeZooKeeperClient(server: server)
        old.connect()
        let namespace = ZooKeeperLockNamespace(client: old)
        var created: Result<LockCreatedNode, ReplyError>?
        namespace.create(path: "/lock", data: [], mode: .persistent, owner: 0) { created = $0 }
        old.sendOne()
        old.deliverOne()
        XCTAssertNotNil(try? created?.get())

        var fired: [String] = []
        namespace.children(path: "/lock", watch: { fired.append("children \($0)") }) { _ in }
        namespace.exists(path: "/lock", watch: { fired.append("exists \($0)") }) { _ in }
        namespace.exists(path: "/missing", watch: { fired.append("missing \($0)") }) { _ in }
        for _ in 0..<3 { old.sendOne() }
        for _ in 0..<3 { old.deliverOne() }
        XCTAssertEqual(namespace.outstandingWatchCount, 2, "a watch on a missing node is dropped")

        let new = FakeZooKeeperClient(server: server)
        new.connect()
        namespace.client = new
        XCTAssertEqual(fired.sorted(), ["children dataChanged", "exists dataChanged"])
        XCTAssertEqual(namespace.outstandingWatchCount, 0)
        namespace.client = new
        old.close(serverReachable: true)
        XCTAssertEqual(fired.count, 2, "each fires once")
    }
}
