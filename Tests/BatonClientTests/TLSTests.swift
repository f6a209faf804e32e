@testable import BatonClient
import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// TLS on batond's TCP listener against a real batond, with certificates made by `openssl` for the
/// test (TestCertificates): the library, the CLI, refusals (wrong CA, wrong name, missing or
/// foreign client certificate), a plain client at a TLS port, and a handshake that never finishes.
final class TLSTests: XCTestCase {
    private var directory = ""
    private var certificates: TestCertificates!

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory("baton-tls-")
        certificates = try TestCertificates(directory: directory)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func startDaemon(mutual: Bool = false, arguments: [String] = []) throws -> TestDaemon {
        var options = TestDaemon.Options(listensOnTCP: true, arguments: arguments)
        options.tcpSecurityArguments = certificates.serverArguments(mutual: mutual)
        options.logLevel = "debug"
        return try TestDaemon(options)
    }

    private func endpoint(_ daemon: TestDaemon) -> Endpoint { .tcp(host: "127.0.0.1", port: daemon.tcpPort!) }

    private func options(_ daemon: TestDaemon, _ tls: TLSOptions?) -> ClientOptions {
        var options = ClientOptions(clientName: "tls-test", connectTimeout: .seconds(10), tcpAuthenticationToken: daemon.tcpToken)
        options.tls = tls
        return options
    }

    private var trusting: TLSOptions { TLSOptions(caFile: certificates.caCertificate) }

    /// The failure of a blocking connect (it must fail).
    private func connectFailure(_ daemon: TestDaemon, _ tls: TLSOptions?, file: StaticString = #filePath,
                                line: UInt = #line) -> BatonError? {
        do {
            let client = try BlockingClient.connect(to: endpoint(daemon), options: options(daemon, tls))
            client.disconnect()
            XCTFail("the connection should have been refused", file: file, line: line)
            return nil
        } catch {
            return error
        }
    }

    /// After a refusal the daemon still serves TLS clients.
    private func assertServes(_ daemon: TestDaemon, _ tls: TLSOptions, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let client = try BlockingClient.connect(to: endpoint(daemon), options: options(daemon, tls))
            defer { client.disconnect() }
            try client.ping()
        } catch {
            XCTFail("a good TLS client should be served: \(error)\n\(daemon.standardError)", file: file, line: line)
        }
    }

    // MARK: Library

    func testTheBlockingAndAsyncClientsAuthenticateAndLockOverTLS() async throws {
        let daemon = try startDaemon()
        let blocking = try BlockingClient.connect(to: endpoint(daemon), options: options(daemon, trusting))
        defer { blocking.disconnect() }
        let grant = try blocking.acquire("/locks/tls")
        XCTAssertEqual(grant.path, "/locks/tls")
        _ = try blocking.create("/over-tls", data: Array("secret".utf8))

        let async = try await BatonClient.connect(to: endpoint(daemon), options: options(daemon, trusting))
        let (data, _) = try await async.get("/over-tls")
        XCTAssertEqual(data, Array("secret".utf8))
        // The blocking client holds the lock: the async one queues behind it and is granted on release.
        let waiting = Task { try await async.acquire("/locks/tls", timeout: .seconds(20)) }
        try blocking.release(grant)
        let second = try await waiting.value
        XCTAssertGreaterThan(second.token, grant.token)
        try await async.release(second)
        // A reply bigger than a TLS record (16 KiB) crosses several records.
        let big = [UInt8](repeating: 0x5A, count: 200_000)
        _ = try await async.create("/big", data: big)
        XCTAssertEqual(try blocking.get("/big").0, big)
        async.disconnect()
        XCTAssertTrue(daemon.standardError.contains("tcp_security=TLS"), daemon.standardError)
    }

    /// A reconnect after a cut does the TLS handshake again (the resumed session keeps its hold), so a
    /// client that reconnects never falls back to plain TCP.
    func testAClientThatReconnectsOverTLSResumesItsSession() async throws {
        let daemon = try startDaemon()
        defer { daemon.stop() }
        var reconnecting = options(daemon, trusting)
        reconnecting.reconnect = ReconnectPolicy(initialBackoff: .milliseconds(20), maximumBackoff: .milliseconds(200))
        let client = try await BatonClient.connect(to: endpoint(daemon), options: reconnecting)
        let statuses = ClientReconnectFakePeerTests.Statuses(client)
        let grant = try await client.acquire("/locks/tls-resume")
        XCTAssertEqual(shutdown(client.connection.descriptor, Int32(SHUT_RDWR)), 0)
        XCTAssertEqual(statuses.waitFor { $0 == .resumed }.last, .resumed, daemon.standardError)
        let current = try await client.checkToken("/locks/tls-resume", token: grant.token)
        XCTAssertTrue(current, "the hold survived the cut: same session, resumed over TLS")
        try await client.release(grant)
    }

    func testAServerCertificateFromAnotherCAIsRefused() throws {
        let daemon = try startDaemon()
        let error = connectFailure(daemon, TLSOptions(caFile: certificates.otherCACertificate))
        guard case .connectFailed(let detail) = error else { return XCTFail("expected connectFailed, got \(String(describing: error))") }
        XCTAssertTrue(detail.contains("certificate verify failed"), detail)
        assertServes(daemon, trusting)
    }

    func testTheServerNameIsChecked() throws {
        let daemon = try startDaemon()
        let error = connectFailure(daemon, TLSOptions(caFile: certificates.caCertificate, serverName: "batond.example"))
        guard case .connectFailed(let detail) = error else { return XCTFail("expected connectFailed, got \(String(describing: error))") }
        XCTAssertTrue(detail.contains("hostname mismatch"), detail)
        // The certificate names localhost too; by default the endpoint's address is checked (127.0.0.1).
        assertServes(daemon, TLSOptions(caFile: certificates.caCertificate, serverName: "localhost"))
        assertServes(daemon, trusting)
    }

    func testMutualTLSRefusesMissingAndForeignCertificatesAndNamesTheClient() throws {
        let daemon = try startDaemon(mutual: true)
        let missing = connectFailure(daemon, trusting)
        guard case .connectFailed(let detail) = missing else { return XCTFail("expected connectFailed, got \(String(describing: missing))") }
        XCTAssertTrue(detail.contains("certificate required"), detail)

        let foreign = connectFailure(daemon, TLSOptions(caFile: certificates.caCertificate,
                                                        certificateFile: certificates.otherClientCertificate,
                                                        keyFile: certificates.otherClientKey))
        guard case .connectFailed(let foreignDetail) = foreign else { return XCTFail("expected connectFailed, got \(String(describing: foreign))") }
        XCTAssertTrue(foreignDetail.contains("unknown ca"), foreignDetail)

        let good = TLSOptions(caFile: certificates.caCertificate, certificateFile: certificates.clientCertificate,
                              keyFile: certificates.clientKey)
        let client = try BlockingClient.connect(to: endpoint(daemon), options: options(daemon, good))
        defer { client.disconnect() }
        _ = try client.tryAcquire("/locks/mutual")
        let log = daemon.standardError
        XCTAssertTrue(log.contains("tcp_security=mutual TLS"), log)
        XCTAssertTrue(log.contains("tls_peer=\(TestCertificates.clientCommonName)"), log)
        XCTAssertTrue(log.contains("peer did not return a certificate"), log)
    }

    // MARK: Transport

    func testAPlainClientAtTheTLSPortIsClosedAndOthersAreServed() throws {
        // Deadlines far beyond the wait below: the close must come from TLS, not from a deadline.
        let daemon = try startDaemon(arguments: ["--hello-timeout-ms", "120000", "--authenticate-timeout-ms", "120000"])
        let good = try BlockingClient.connect(to: endpoint(daemon), options: options(daemon, trusting))
        defer { good.disconnect() }
        let plain = try PlainSocket(port: daemon.tcpPort!)
        var hello = WireWriter()
        Codec.encodeRequest(.hello(version: ProtocolVersion.current, clientName: "plain"), requestID: 1, into: &hello)
        plain.send(hello.bytes)
        XCTAssertTrue(plain.waitForClose(seconds: 20), "the server must close a plain connection, not wait on it")
        // Through the library: a plain client fails instead of hanging.
        XCTAssertNotNil(connectFailure(daemon, nil))
        try good.ping()
        assertServes(daemon, trusting)
        XCTAssertTrue(daemon.standardError.contains("TLS handshake failed"), daemon.standardError)
    }

    func testAHandshakeThatNeverFinishesIsClosedByTheHelloDeadline() throws {
        let daemon = try startDaemon(arguments: ["--hello-timeout-ms", "300"])
        let stalled = try PlainSocket(port: daemon.tcpPort!)
        // The first bytes of a TLS record header (a ClientHello), then nothing.
        stalled.send([0x16, 0x03, 0x01])
        XCTAssertTrue(stalled.waitForClose(seconds: 20), "a stalled handshake must be closed by the hello deadline")
        assertServes(daemon, trusting)
        XCTAssertTrue(daemon.standardError.contains("past its deadline"), daemon.standardError)
    }

    func testATLSClientAtAPlainPortFailsInsteadOfHanging() throws {
        var daemonOptions = TestDaemon.Options(listensOnTCP: true)
        daemonOptions.logLevel = "info"
        let daemon = try TestDaemon(daemonOptions)
        let error = connectFailure(daemon, trusting)
        guard case .connectFailed(let detail) = error else { return XCTFail("expected connectFailed, got \(String(describing: error))") }
        XCTAssertTrue(detail.hasPrefix("TLS"), detail)
        XCTAssertTrue(daemon.standardError.contains("tcp_security=plaintext"), daemon.standardError)
    }

    // MARK: CLI

    func testTheCLILocksOverTLSWithOptionsOrEnvironment() throws {
        let daemon = try startDaemon(mutual: true)
        let tcp = "127.0.0.1:\(daemon.tcpPort!)"
        let withOptions = try runBaton(["run", "--tcp", tcp, "--tcp-token-file", daemon.tcpTokenPath,
                                        "--tls-ca", certificates.caCertificate, "--tls-cert", certificates.clientCertificate,
                                        "--tls-key", certificates.clientKey, "/locks/cli", "--", "/bin/sh", "-c",
                                        "echo $BATON_LOCK_PATH"])
        XCTAssertEqual(withOptions.status, 0, withOptions.error)
        XCTAssertEqual(withOptions.output, "/locks/cli\n")

        let environment = ["BATON_TCP_TOKEN_FILE": daemon.tcpTokenPath, "BATON_TLS_CA": certificates.caCertificate,
                           "BATON_TLS_CERT": certificates.clientCertificate, "BATON_TLS_KEY": certificates.clientKey,
                           "BATON_TLS_SERVER_NAME": "localhost"]
        let withEnvironment = try runBaton(["--tcp", tcp, "ping"], environment: environment)
        XCTAssertEqual(withEnvironment.status, 0, withEnvironment.error)

        var wrongName = environment
        wrongName["BATON_TLS_SERVER_NAME"] = "batond.example"
        let refused = try runBaton(["--tcp", tcp, "ping"], environment: wrongName)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.error.contains("hostname mismatch"), refused.error)

        let withoutCertificate = try runBaton(["--tcp", tcp, "--tls-ca", certificates.caCertificate, "ping"],
                                              environment: ["BATON_TCP_TOKEN_FILE": daemon.tcpTokenPath])
        XCTAssertNotEqual(withoutCertificate.status, 0)
        XCTAssertTrue(withoutCertificate.error.contains("certificate required"), withoutCertificate.error)
    }

    /// Runs `baton` with exactly these arguments; BATON_TLS_* of the test's own environment are not passed.
    private func runBaton(_ arguments: [String], environment: [String: String] = [:]) throws -> Subprocess.Outcome {
        var inherited = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("BATON_") }
        inherited.merge(environment) { $1 }
        return try Subprocess.run(BuiltProducts.path("baton"), arguments, environment: inherited)
    }
}

/// A bare TCP socket to loopback: sends bytes, waits for the server to close (whatever it sends first).
private final class PlainSocket {
    let descriptor: Int32

    init(port: UInt16) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else { throw LiveDaemonError("connect: \(String(cString: strerror(errno)))") }
    }

    deinit { close(descriptor) }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// True when the server closed (EOF or reset) within `seconds`.
    func waitForClose(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 4_096)
        while Date() < deadline {
            var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 200) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count == 0 || (count < 0 && errno != EINTR && errno != EAGAIN) { return true }
        }
        return false
    }
}
