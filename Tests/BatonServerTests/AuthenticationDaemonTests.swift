import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// `batond --listen` requires `--tcp-token-file`, and TCP clients must present the token before a session.
final class AuthenticationDaemonTests: DaemonTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory("baton-auth-")
    }

    override func tearDown() {
        super.tearDown()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func startDaemon() throws -> TestDaemon {
        return kept(try TestDaemon(TestDaemon.Options(listensOnTCP: true)))
    }

    /// Runs batond with TCP on a free port and these extra arguments; it must refuse to start.
    private func refusal(_ extra: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let port = try TestDaemon.freeLoopbackPort()
        let arguments = ["--socket", directory + "/s.sock", "--in-memory", "--listen", "127.0.0.1:\(port)"] + extra
        let (termination, output) = try TestDaemon.runToCompletion(arguments: arguments)
        XCTAssertEqual(termination, .exited(1), output, file: file, line: line)
        XCTAssertTrue(output.hasPrefix("batond: error: "), output, file: file, line: line)
        XCTAssertEqual(output.split(separator: "\n").count, 1, "one line: \(output)", file: file, line: line)
        XCTAssertThrowsError(try RawConnection(port: port), "nothing may listen", file: file, line: line)
        return output
    }

    // MARK: Start-up

    func testListenWithoutATokenFileIsRefused() throws {
        let output = try refusal([])
        XCTAssertTrue(output.contains("--tcp-token-file"), output)
    }

    func testTokenFileReadableByOthersIsRefused() throws {
        for mode: mode_t in [0o640, 0o604, 0o620, 0o660, 0o644] {
            let path = directory + "/token-\(String(mode, radix: 8))"
            try TestDaemon.writeTokenFile(path, contents: TestDaemon.randomToken(), mode: mode)
            let output = try refusal(["--tcp-token-file", path])
            XCTAssertTrue(output.contains("chmod 600"), output)
        }
    }

    func testMissingShortAndEmptyTokenFilesAreRefused() throws {
        XCTAssertTrue(try refusal(["--tcp-token-file", directory + "/absent"]).contains("cannot open"))
        let short = directory + "/short"
        try TestDaemon.writeTokenFile(short, contents: Array("too-short\n".utf8))
        XCTAssertTrue(try refusal(["--tcp-token-file", short]).contains("at least"))
        let empty = directory + "/empty"
        try TestDaemon.writeTokenFile(empty, contents: Array("\n".utf8))
        XCTAssertTrue(try refusal(["--tcp-token-file", empty]).contains("at least"))
        XCTAssertTrue(try refusal(["--tcp-token-file", directory]).contains("not a regular file"))
    }

    func testListenWithoutTLSNeedsTheExplicitPlaintextFlag() throws {
        let path = directory + "/token"
        try TestDaemon.writeTokenFile(path, contents: TestDaemon.randomToken())
        let output = try refusal(["--tcp-token-file", path])
        XCTAssertTrue(output.contains("--tls-cert") && output.contains("--tcp-plaintext"), output)
        XCTAssertTrue(try refusal(["--tcp-token-file", path, "--tls-cert", path]).contains("go together"))
        XCTAssertTrue(try refusal(["--tcp-token-file", path, "--tls-client-ca", path]).contains("needs --tls-cert"))
        // A file that is no certificate stops the start with OpenSSL's reason, before anything listens.
        XCTAssertTrue(try refusal(["--tcp-token-file", path, "--tls-cert", path, "--tls-key", path]).contains("TLS: cannot read the certificate"))
    }

    func testTokenFileWithoutListenIsRefused() throws {
        let path = directory + "/token"
        try TestDaemon.writeTokenFile(path, contents: TestDaemon.randomToken())
        let (termination, output) = try TestDaemon.runToCompletion(
            arguments: ["--socket", directory + "/s.sock", "--in-memory", "--tcp-token-file", path])
        XCTAssertEqual(termination, .exited(1))
        XCTAssertTrue(output.contains("only with --listen"), output)
    }

    // MARK: Clients

    func testTCPClientWithoutTheTokenCannotOpenASession() throws {
        let daemon = try startDaemon()
        let stranger = try daemon.connectTCP(authenticating: false)
        try stranger.hello()
        XCTAssertEqual(try stranger.call(.openSession(timeoutMilliseconds: 0, flags: [])).result.failureCode, .notAuthorized)
        XCTAssertEqual(try stranger.call(.create(path: "/x", data: [], mode: .persistent)).result.failureCode, .sessionRequired)
        XCTAssertEqual(try stranger.callSuccessfully(.ping), .empty, "the connection stays open")
        let wrong = Array("0000000000000000000000000000000000000000000000000000000000000000".utf8)
        XCTAssertEqual(try stranger.call(.authenticate(token: wrong)).result.failureCode, .notAuthorized)
        XCTAssertEqual(try stranger.call(.openSession(timeoutMilliseconds: 0, flags: [])).result.failureCode, .notAuthorized)

        // The same connection, with the token (the file's trailing line break is not part of it).
        let token = try XCTUnwrap(daemon.tcpToken)
        try stranger.authenticate(token: token)
        guard case .session = try stranger.callSuccessfully(.openSession(timeoutMilliseconds: 0, flags: [])) else {
            return XCTFail("an authenticated TCP connection opens a session")
        }
        guard case .created(let path, _) = try stranger.callSuccessfully(.create(path: "/x", data: [], mode: .persistent)) else {
            return XCTFail("create should succeed with a session")
        }
        XCTAssertEqual(path, "/x")
    }

    func testThreeWrongTokensCloseTheConnection() throws {
        let daemon = try startDaemon()
        let guesser = try daemon.connectTCP(authenticating: false)
        try guesser.hello()
        let wrong = Array("guess-guess-guess-guess".utf8)
        for _ in 0..<2 {
            XCTAssertEqual(try guesser.call(.authenticate(token: wrong)).result.failureCode, .notAuthorized)
        }
        try guesser.send(.authenticate(token: wrong))
        let messages = try guesser.readUntilClosed()
        guard messages.count == 1, case .reply(let reply) = messages[0] else {
            return XCTFail("expected one reply before the close, got \(messages)")
        }
        XCTAssertEqual(reply.result.failureCode, .notAuthorized)
        // Others are unaffected.
        XCTAssertNoThrow(try daemon.connectTCP().handshake())
        XCTAssertNoThrow(try daemon.connect().handshake())
    }

    func testUnixClientsNeedNoToken() throws {
        let daemon = try startDaemon()
        let local = try daemon.connect()
        XCTAssertNil(local.authenticationToken)
        XCTAssertNoThrow(try local.handshake())
    }
}

private extension Result where Failure == ReplyError {
    var failureCode: ErrorCode? {
        if case .failure(let error) = self { return error.code }
        return nil
    }
}
