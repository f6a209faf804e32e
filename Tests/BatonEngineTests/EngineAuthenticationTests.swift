@testable import BatonEngine
import BatonProtocol
import XCTest

/// TCP connections authenticate before a session (Proto/PROTOCOL.md §4.7); Unix connections need not.
final class EngineAuthenticationTests: XCTestCase {
    private let token = EngineHarness.tcpToken

    /// A TCP connection that said hello but has not authenticated.
    private func helloOverTCP(_ harness: EngineHarness, _ connection: ConnectionID) {
        XCTAssertTrue(harness.engine.connectionOpened(connection, transport: .tcp, now: harness.now))
        guard case .success(.hello) = harness.call(.hello(version: ProtocolVersion.current, clientName: "tcp"),
                                                   on: connection) else { return XCTFail("hello failed") }
    }

    func testOpenSessionOverTCPWithoutAuthenticationIsRefusedAndTheConnectionStaysOpen() {
        let harness = EngineHarness()
        helloOverTCP(harness, 1)
        let (requestID, outputs) = harness.send(.openSession(timeoutMilliseconds: 0, flags: []), on: 1)
        XCTAssertEqual(replies(outputs, to: 1).map(\.requestID), [requestID])
        XCTAssertEqual(replies(outputs, to: 1).first?.result.errorCode, .notAuthorized)
        XCTAssertEqual(closes(outputs), [])
        XCTAssertEqual(harness.engine.sessionCount, 0)
        // Still usable: ping works, and a later authenticate lets the session open.
        XCTAssertEqual(harness.call(.ping, on: 1), .success(.empty))
        XCTAssertEqual(harness.call(.authenticate(token: token), on: 1), .success(.empty))
        guard case .success(.session) = harness.call(.openSession(timeoutMilliseconds: 0, flags: []), on: 1) else {
            return XCTFail("an authenticated TCP connection opens a session")
        }
        XCTAssertEqual(harness.engine.sessionCount, 1)
    }

    func testResumeOverTCPWithoutAuthenticationIsRefusedEvenWithTheRightSecret() {
        let harness = EngineHarness()
        let owner = harness.openSession(1, transport: .tcp)
        harness.engine.connectionClosed(1, now: harness.now)
        _ = harness.engine.takeOutputs()
        helloOverTCP(harness, 2)
        XCTAssertEqual(errorCode(harness.call(.resumeSession(sessionID: owner.id, secret: owner.secret), on: 2)),
                       .notAuthorized)
        XCTAssertEqual(harness.call(.authenticate(token: token), on: 2), .success(.empty))
        guard case .success(.resumed) = harness.call(.resumeSession(sessionID: owner.id, secret: owner.secret), on: 2) else {
            return XCTFail("resume after authenticating should succeed")
        }
    }

    func testWrongTokensAreRefused() {
        let harness = EngineHarness()
        helloOverTCP(harness, 1)
        var wrongLastByte = token
        wrongLastByte[wrongLastByte.count - 1] ^= 1
        XCTAssertEqual(errorCode(harness.call(.authenticate(token: wrongLastByte), on: 1)), .notAuthorized)
        XCTAssertEqual(errorCode(harness.call(.openSession(timeoutMilliseconds: 0, flags: []), on: 1)), .notAuthorized,
                       "a failed authenticate does not authorize")
        XCTAssertEqual(errorCode(harness.call(.authenticate(token: Array(token.dropLast())), on: 1)), .notAuthorized,
                       "a prefix of the token is not the token")
        XCTAssertEqual(harness.engine.connectionCount, 1, "two failures leave the connection open")
        XCTAssertEqual(harness.engine.authenticationCounts.failures, 2)
    }

    func testTheRightTokenAuthorizesOnlyItsConnection() {
        let harness = EngineHarness()
        helloOverTCP(harness, 1)
        helloOverTCP(harness, 2)
        XCTAssertEqual(harness.call(.authenticate(token: token), on: 1), .success(.empty))
        guard case .success(.session) = harness.call(.openSession(timeoutMilliseconds: 0, flags: []), on: 1) else {
            return XCTFail("the authenticated connection opens a session")
        }
        XCTAssertEqual(errorCode(harness.call(.openSession(timeoutMilliseconds: 0, flags: []), on: 2)), .notAuthorized)
        XCTAssertEqual(harness.engine.authenticationCounts.successes, 1)
    }

    func testThirdFailureClosesTheConnection() {
        let harness = EngineHarness()
        helloOverTCP(harness, 1)
        let wrong = Array("not-the-token".utf8)
        for _ in 1..<Engine.authenticationFailuresMax {
            let (_, outputs) = harness.send(.authenticate(token: wrong), on: 1)
            XCTAssertEqual(replies(outputs, to: 1).first?.result.errorCode, .notAuthorized)
            XCTAssertEqual(closes(outputs), [])
        }
        let (requestID, outputs) = harness.send(.authenticate(token: wrong), on: 1)
        XCTAssertEqual(replies(outputs, to: 1).map(\.requestID), [requestID])
        XCTAssertEqual(replies(outputs, to: 1).first?.result.errorCode, .notAuthorized)
        XCTAssertEqual(outputs.last, .close(1), "the reply goes out, then the connection closes")
        XCTAssertEqual(harness.engine.connectionCount, 0)
        // The right token is too late: the connection is gone and its frames are dropped.
        XCTAssertEqual(harness.send(.authenticate(token: token), on: 1).outputs, [])
    }

    func testUnixConnectionsNeedNoToken() {
        let harness = EngineHarness()
        harness.connect(1, transport: .unix)
        guard case .success(.session) = harness.call(.openSession(timeoutMilliseconds: 0, flags: []), on: 1) else {
            return XCTFail("a Unix connection opens a session without authenticating")
        }
        // authenticate on an authorized connection is answered ok without looking at the token.
        XCTAssertEqual(harness.call(.authenticate(token: []), on: 1), .success(.empty))
        XCTAssertEqual(harness.engine.authenticationCounts.failures, 0)
    }

    func testWithoutAConfiguredTokenNoTCPConnectionCanOpenASession() {
        let harness = EngineHarness { $0.tcpAuthenticationToken = nil }
        helloOverTCP(harness, 1)
        XCTAssertEqual(errorCode(harness.call(.authenticate(token: []), on: 1)), .notAuthorized)
        XCTAssertEqual(errorCode(harness.call(.authenticate(token: Array("anything".utf8)), on: 1)), .notAuthorized)
        XCTAssertEqual(errorCode(harness.call(.openSession(timeoutMilliseconds: 0, flags: []), on: 1)), .notAuthorized)
    }

    func testAuthenticateBeforeHelloIsAHandshakeError() {
        let harness = EngineHarness()
        XCTAssertTrue(harness.engine.connectionOpened(1, transport: .tcp, now: harness.now))
        let (_, outputs) = harness.send(.authenticate(token: token), on: 1)
        XCTAssertEqual(replies(outputs, to: 1).first?.result.errorCode, .handshakeRequired)
        XCTAssertEqual(closes(outputs), [1])
    }

    func testTokenComparison() {
        let expected = Array("0123456789abcdef".utf8)
        XCTAssertTrue(Engine.tokensMatch(expected, expected))
        XCTAssertFalse(Engine.tokensMatch(Array("0123456789abcdeF".utf8), expected))
        XCTAssertFalse(Engine.tokensMatch(Array("1123456789abcdef".utf8), expected))
        XCTAssertFalse(Engine.tokensMatch(expected + [0], expected), "a longer token with the right prefix")
        XCTAssertFalse(Engine.tokensMatch(Array(expected.dropLast()), expected))
        XCTAssertFalse(Engine.tokensMatch([], expected))
        XCTAssertFalse(Engine.tokensMatch([], []), "an empty expected token matches nothing")
    }

    func testStatisticsCountSessionsNodesAndWatches() {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2, transport: .tcp)
        let nodesBefore = harness.engine.statistics.nodes
        _ = harness.call(.create(path: "/a", data: [], mode: .persistent), on: 1)
        _ = harness.call(.create(path: "/b", data: [], mode: .ephemeral), on: 2)
        _ = harness.call(.get(path: "/a", watch: true), on: 1)
        _ = harness.call(.exists(path: "/missing", watch: true), on: 2)
        _ = harness.call(.children(path: "/", watch: true), on: 2)
        var statistics = harness.engine.statistics
        XCTAssertEqual(statistics.connections, 2)
        XCTAssertEqual(statistics.sessions, 2)
        XCTAssertEqual(statistics.detachedSessions, 0)
        XCTAssertEqual(statistics.nodes, nodesBefore + 2)
        XCTAssertEqual(statistics.watches, 3)
        XCTAssertEqual(statistics.authenticationSuccesses, 1)
        XCTAssertEqual(statistics.authenticationFailures, 0)

        harness.engine.connectionClosed(2, now: harness.now)  // TCP: its session is kept, detached
        _ = harness.engine.takeOutputs()
        statistics = harness.engine.statistics
        XCTAssertEqual(statistics.connections, 1)
        XCTAssertEqual(statistics.sessions, 2)
        XCTAssertEqual(statistics.detachedSessions, 1)
        harness.engine.connectionClosed(1, now: harness.now)  // Unix: its session ends at once
        _ = harness.engine.takeOutputs()
        statistics = harness.engine.statistics
        XCTAssertEqual(statistics.sessions, 1)
        XCTAssertEqual(statistics.connections, 0)
    }
}
