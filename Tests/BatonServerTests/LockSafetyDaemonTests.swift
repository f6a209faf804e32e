import BatonProtocol
import BatonTestSupport
import XCTest

/// Issue 8 as a hostile or careless client tries it against the real `batond`: no sequence of requests
/// ends another hold or wedges a lock (PROTOCOL.md §12.1, §12.6).
final class LockSafetyDaemonTests: XCTestCase {
    private var daemons: [TestDaemon] = []

    override func tearDown() {
        if let run = testRun, run.failureCount + run.unexpectedExceptionCount > 0 {
            for daemon in daemons { print("--- batond log (\(daemon.directory)):\n\(daemon.standardError)") }
        }
        daemons.removeAll()
    }

    private func startDaemon() throws -> TestDaemon {
        let daemon = try TestDaemon()
        daemons.append(daemon)
        return daemon
    }

    private func code(_ reply: Reply, file: StaticString = #filePath, line: UInt = #line) -> ErrorCode? {
        guard case .failure(let error) = reply.result else {
            XCTFail("expected an error reply, got \(reply.result)", file: file, line: line)
            return nil
        }
        return error.code
    }

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

        XCTAssertEqual(code(try client.call(.release(node: first.node, token: first.token))), .lockLost)
        XCTAssertEqual(try client.callSuccessfully(.checkToken(path: "/reuse/L", token: second.token)),
                       .tokenStatus(current: true), "the second hold is intact")
        XCTAssertEqual(try client.callSuccessfully(.release(node: second.node, token: second.token)), .empty)
    }
}
