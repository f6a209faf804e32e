import BatonClient
import Foundation
import BatonProtocol
import BatonTestSupport
import XCTest

/// Paths of the executables built next to this test bundle (`baton`).
enum BuiltProducts {
    static var directory: URL {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    }
    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}

/// A test case with a `LiveDaemon` of its own per test, stopped after it.
class LiveDaemonTestCase: XCTestCase {
    var daemon: LiveDaemon!

    /// The daemon for the test about to run; a subclass overrides it for TCP or another store.
    func makeDaemon() throws -> LiveDaemon { try LiveDaemon() }

    override func setUpWithError() throws {
        try super.setUpWithError()
        daemon = try makeDaemon()
    }

    override func tearDown() {
        daemon?.stop()
        daemon = nil
        super.tearDown()
    }
}

/// Where a daemon under test keeps its namespace.
enum DaemonStore {
    /// The embedded store in a fresh data directory.
    case embedded
    /// A sidecar on the ZooKeeper (standalone or ensemble) of `SharedEnsemble`, under its own chroot.
    case zooKeeper(SharedEnsemble)
}

/// A real batond for one test (`TestDaemon` from BatonTestSupport), seen as client endpoints.
/// Short session timeouts are allowed so heartbeat and expiry tests stay quick.
final class LiveDaemon {
    let daemon: TestDaemon
    let store: DaemonStore

    /// `chroot` (a ZooKeeper path) keeps one test's nodes apart from the others' on a shared ZooKeeper.
    init(tcp: Bool = false, store: DaemonStore = .embedded, chroot: String = "/baton") throws {
        self.store = store
        let arguments = ["--session-timeout-min-ms", "200"]
        switch store {
        case .embedded:
            var options = TestDaemon.Options(listensOnTCP: tcp, arguments: arguments)
            options.logLevel = "info"
            daemon = try TestDaemon(options)
        case .zooKeeper(let shared):
            daemon = try TestDaemon.zooKeeperSidecar(store: "zookeeper://\(try shared.ensemble().connectString)\(chroot)",
                                                     sessionTimeoutMilliseconds: 4_000, extra: arguments, logLevel: "info",
                                                     listensOnTCP: tcp)
        }
    }

    var isZooKeeper: Bool {
        if case .zooKeeper = store { return true }
        return false
    }

    var directory: URL { URL(fileURLWithPath: daemon.directory) }
    var socketPath: String { daemon.socketPath }
    var endpoint: Endpoint { .unix(path: daemon.socketPath) }
    var tcpEndpoint: Endpoint? { daemon.tcpPort.map { .tcp(host: "127.0.0.1", port: $0) } }
    /// Client options that carry the daemon's TCP token.
    func tcpOptions(_ options: ClientOptions = ClientOptions()) -> ClientOptions {
        var options = options
        options.tcpAuthenticationToken = daemon.tcpToken
        return options
    }

    func stop() {
        _ = daemon.stop()
    }
}

struct LiveDaemonError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
