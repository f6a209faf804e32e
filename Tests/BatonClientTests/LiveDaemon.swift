import BatonClient
import Foundation
import BatonProtocol
import BatonTestSupport

/// Paths of the executables built next to this test bundle (`baton`).
enum BuiltProducts {
    static var directory: URL {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    }
    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}

/// A real batond for one test (`TestDaemon` from BatonTestSupport), seen as client endpoints.
/// Short session timeouts are allowed so heartbeat and expiry tests stay quick.
final class LiveDaemon {
    let daemon: TestDaemon

    init(tcp: Bool = false) throws {
        var options = TestDaemon.Options(listensOnTCP: tcp, arguments: ["--session-timeout-min-ms", "200"])
        options.logLevel = "info"
        daemon = try TestDaemon(options)
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
