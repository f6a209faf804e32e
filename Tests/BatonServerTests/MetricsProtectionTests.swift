import BatonEngine
import BatonProtocol
@testable import BatonServer
import BatonTestSupport
import Foundation
import XCTest

/// `--metrics-token-file` and `--metrics-socket`: /metrics behind a bearer token, or on a Unix socket.
final class MetricsProtectionTests: DaemonTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory("baton-metrics-")
    }

    override func tearDown() {
        super.tearDown()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func request(_ path: String, authorization: String? = nil) -> [UInt8] {
        var text = "GET \(path) HTTP/1.1\r\nHost: batond\r\n"
        if let authorization { text += "Authorization: \(authorization)\r\n" }
        return Array((text + "\r\n").utf8)
    }

    // MARK: Pure

    func testTheBearerTokenIsCheckedOnMetricsOnly() {
        let token = Array("metrics-token-0123456789".utf8)
        func outcome(_ path: String, _ authorization: String?) -> MetricsHTTP.Outcome {
            MetricsHTTP.examine(request(path, authorization: authorization)[...], bearerToken: token)
        }
        XCTAssertEqual(outcome("/metrics", nil), .respond(status: 401, includesBody: true))
        XCTAssertEqual(outcome("/metrics", "Bearer wrong-token-0123456789"), .respond(status: 401, includesBody: true))
        XCTAssertEqual(outcome("/metrics", "Basic bWV0cmljcw=="), .respond(status: 401, includesBody: true))
        XCTAssertEqual(outcome("/metrics", "Bearer metrics-token-01234567"), .respond(status: 401, includesBody: true))
        XCTAssertEqual(outcome("/metrics", "Bearer metrics-token-0123456789"), .metrics(includesBody: true))
        XCTAssertEqual(MetricsHTTP.examine(Array("GET /metrics HTTP/1.1\r\nauthorization:   bearer metrics-token-0123456789 \r\n\r\n".utf8)[...],
                                           bearerToken: token), .metrics(includesBody: true))
        XCTAssertEqual(outcome("/healthz", nil), .health(includesBody: true))
        XCTAssertEqual(outcome("/readyz", nil), .readiness(includesBody: true))
        // Without a token configured, nothing is asked.
        XCTAssertEqual(MetricsHTTP.examine(request("/metrics")[...]), .metrics(includesBody: true))
        let refusal = String(decoding: MetricsHTTP.errorResponse(status: 401, includesBody: true), as: UTF8.self)
        XCTAssertTrue(refusal.hasPrefix("HTTP/1.1 401 Unauthorized\r\n"), refusal)
        XCTAssertTrue(refusal.contains("WWW-Authenticate: Bearer"), refusal)
    }

    // MARK: Daemon

    func testMetricsNeedTheTokenAndProbesDoNot() throws {
        let token = TestDaemon.randomToken()
        let tokenPath = directory + "/metrics.token"
        try TestDaemon.writeTokenFile(tokenPath, contents: token + [UInt8(ascii: "\n")])
        let port = try TestDaemon.freeLoopbackPort()
        let daemon = kept(try TestDaemon(TestDaemon.Options(arguments: ["--metrics", "127.0.0.1:\(port)", "--metrics-token-file", tokenPath])))
        let refused = try HTTPClient.parse(try HTTPClient.exchange(port: port, request: request("/metrics")))
        XCTAssertEqual(refused.status, 401)
        XCTAssertFalse(refused.body.contains("baton_"))
        let wrong = try HTTPClient.parse(try HTTPClient.exchange(
            port: port, request: request("/metrics", authorization: "Bearer " + String(decoding: TestDaemon.randomToken(), as: UTF8.self))))
        XCTAssertEqual(wrong.status, 401)
        let served = try HTTPClient.parse(try HTTPClient.exchange(
            port: port, request: request("/metrics", authorization: "Bearer " + String(decoding: token, as: UTF8.self))))
        XCTAssertEqual(served.status, 200)
        XCTAssertTrue(served.body.contains("baton_requests_total"), served.body)
        XCTAssertEqual(try HTTPClient.get(port: port, path: "/healthz").status, 200)
    }

    func testMetricsOnAUnixSocketOfTheDaemonsUserOnly() throws {
        let path = directory + "/metrics.sock"
        let daemon = kept(try TestDaemon(TestDaemon.Options(arguments: ["--metrics-socket", path])))
        var information = stat()
        XCTAssertEqual(lstat(path, &information), 0)
        XCTAssertEqual(information.st_mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(information.st_mode & 0o777, 0o600)
        let connection = try RawConnection(unixPath: path)
        try connection.sendRaw(request("/metrics"))
        let response = try HTTPClient.parse(try HTTPClient.readToEnd(connection.descriptor, timeoutSeconds: 10))
        XCTAssertEqual(response.status, 200)
        XCTAssertTrue(response.body.contains("baton_requests_total"), response.body)
        XCTAssertEqual(daemon.stop(), .exited(0))
        XCTAssertNotEqual(lstat(path, &information), 0, "the metrics socket is removed at shutdown")
    }

    func testATokenFileWithoutAMetricsEndpointIsRefused() throws {
        let tokenPath = directory + "/metrics.token"
        try TestDaemon.writeTokenFile(tokenPath, contents: TestDaemon.randomToken())
        let (termination, output) = try TestDaemon.runToCompletion(arguments: [
            "--socket", directory + "/s.sock", "--in-memory", "--metrics-token-file", tokenPath])
        XCTAssertEqual(termination, .exited(1), output)
        XCTAssertTrue(output.contains("--metrics-token-file is used only with --metrics or --metrics-socket"), output)
    }
}
