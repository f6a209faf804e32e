import BatonProtocol
import BatonTestSupport
import XCTest

/// A test case that starts real daemons: each one it keeps (`kept`) goes away after the test, and
/// when the test failed, what each logged is printed first.
class DaemonTestCase: XCTestCase {
    var daemons: [TestDaemon] = []

    override func tearDown() {
        TestDaemon.printLogs(daemons, failures: testRun?.totalFailureCount ?? 0)
        daemons.removeAll()
        super.tearDown()
    }

    /// Keeps `daemon` until the test ends; returns it.
    func kept(_ daemon: TestDaemon) -> TestDaemon {
        daemons.append(daemon)
        return daemon
    }

    /// The error code of a failure reply; a success fails the test (at the caller's line) and gives nil.
    func failureCode(_ reply: Reply, file: StaticString = #filePath, line: UInt = #line) -> ErrorCode? {
        guard case .failure(let error) = reply.result else {
            XCTFail("expected an error reply, got \(reply.result)", file: file, line: line)
            return nil
        }
        return error.code
    }
}

/// Tests that run once per store: on the embedded store, and again in a subclass that names a
/// ZooKeeper, on a sidecar of it.
class StoreDaemonTestCase: DaemonTestCase {
    /// A ZooKeeper to serve from, or nil for the embedded store: a subclass per store.
    class var zooKeeper: SharedEnsemble? { nil }

    func startDaemon(_ options: TestDaemon.Options = TestDaemon.Options()) throws -> TestDaemon {
        guard let zooKeeper = Self.zooKeeper else { return kept(try TestDaemon(options)) }
        // A chroot per test: the ZooKeeper outlives each test's sidecar.
        let chroot = "/daemon-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return kept(try TestDaemon.zooKeeperSidecar(store: "zookeeper://\(try zooKeeper.ensemble().connectString)\(chroot)",
                                                    sessionTimeoutMilliseconds: 4_000, extra: options.arguments,
                                                    listensOnTCP: options.listensOnTCP))
    }
}
