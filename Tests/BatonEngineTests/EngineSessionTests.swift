@testable import BatonEngine
import BatonNamespace
import BatonProtocol
import XCTest

final class EngineSessionTests: XCTestCase {
    func testOpenSessionClampsTimeoutAndRefusesASecond() {
        let harness = EngineHarness { $0.limits.sessionTimeoutMillisecondsMax = 30_000 }
        harness.connect(1)
        guard case .success(.session(let id, _, let timeout)) = harness.call(
            .openSession(timeoutMilliseconds: 99_000, flags: []), on: 1) else { return XCTFail() }
        XCTAssertNotEqual(id, 0)
        XCTAssertEqual(timeout, 30_000)
        XCTAssertEqual(errorCode(harness.call(.openSession(timeoutMilliseconds: 0, flags: []), on: 1)), .sessionAlreadyOpen)
        XCTAssertEqual(errorCode(harness.call(.resumeSession(sessionID: id, secret: SessionSecret(high: 0, low: 0)), on: 1)),
                       .sessionAlreadyOpen)
    }

    func testSessionLimit() {
        let harness = EngineHarness { $0.limits.sessionsMax = 1 }
        harness.openSession(1)
        harness.connect(2)
        XCTAssertEqual(errorCode(harness.call(.openSession(timeoutMilliseconds: 0, flags: []), on: 2)), .tooManySessions)
    }

    func testNamespaceRequestsReplyWithTheirResults() {
        let harness = EngineHarness()
        harness.openSession(1)
        guard case .success(.created("/a", let stat)) = harness.call(.create(path: "/a", data: [1], mode: .persistent), on: 1)
        else { return XCTFail() }
        XCTAssertEqual(harness.call(.get(path: "/a", watch: false), on: 1), .success(.data(stat: stat, data: [1])))
        XCTAssertEqual(harness.call(.exists(path: "/b", watch: false), on: 1), .success(.exists(nil)))
        guard case .success(.stat(let updated)) = harness.call(.set(path: "/a", data: [2], expectedVersion: 0), on: 1)
        else { return XCTFail() }
        XCTAssertEqual(updated.version, 1)
        XCTAssertEqual(harness.call(.check(path: "/a", expectedVersion: 1), on: 1), .success(.empty))
        guard case .success(.children(_, let names, _)) = harness.call(.children(path: "/", watch: false), on: 1)
        else { return XCTFail() }
        XCTAssertEqual(names, ["a"])
        let multi = harness.call(.multi([.check(path: "/a", expectedVersion: 1), .delete(path: "/a", expectedVersion: 1)]), on: 1)
        XCTAssertEqual(multi, .success(.multi([.checked, .deleted])))
        let failed = harness.call(.multi([.check(path: "/", expectedVersion: -1), .delete(path: "/a", expectedVersion: -1)]), on: 1)
        XCTAssertEqual(errorCode(failed), .noNode)
        if case .failure(let error) = failed { XCTAssertTrue(error.message.hasPrefix("operation 1"), error.message) }
        XCTAssertEqual(errorCode(harness.call(.delete(path: "/", expectedVersion: -1), on: 1)), .invalidArgument)
    }

    /// Issue 8 item 4: a listing is paged (a cursor and `more`), at most `childrenPageMax` names per reply.
    func testChildrenArePagedWithACursor() {
        let harness = EngineHarness { $0.limits.childrenPageMax = 10 }
        harness.openSession(1)
        _ = harness.call(.create(path: "/d", data: [], mode: .persistent), on: 1)
        let all = (0..<25).map { "n\($0 < 10 ? "0" : "")\($0)" }
        for name in all.reversed() { _ = harness.call(.create(path: "/d/" + name, data: [], mode: .persistent), on: 1) }
        var listed: [String] = []
        var after = ""
        var pages = 0
        while true {
            guard case .success(.children(let stat, let names, let more)) = harness.call(
                .children(path: "/d", watch: false, after: after, limit: 0), on: 1) else { return XCTFail() }
            XCTAssertEqual(stat.childrenCount, 25)
            XCTAssertLessThanOrEqual(names.count, 10, "limit 0 is the server's page size")
            listed += names
            pages += 1
            guard more else { break }
            after = names.last!
        }
        XCTAssertEqual(listed, all)
        XCTAssertEqual(pages, 3)
        // A smaller limit, a cursor that is not a child, and a limit over the page size.
        guard case .success(.children(_, let three, let moreAfterThree)) = harness.call(
            .children(path: "/d", watch: false, after: "n115", limit: 3), on: 1) else { return XCTFail() }
        XCTAssertEqual(three, ["n12", "n13", "n14"])
        XCTAssertTrue(moreAfterThree)
        guard case .success(.children(_, let big, _)) = harness.call(.children(path: "/d", watch: false, limit: 1_000), on: 1)
        else { return XCTFail() }
        XCTAssertEqual(big.count, 10)
        guard case .success(.children(_, let none, let moreAfterLast)) = harness.call(
            .children(path: "/d", watch: false, after: "n24", limit: 5), on: 1) else { return XCTFail() }
        XCTAssertEqual(none, [])
        XCTAssertFalse(moreAfterLast)
    }

    func testCloseSessionEndsItAtOnce() {
        let harness = EngineHarness()
        let owner = harness.openSession(1)
        harness.openSession(2)
        _ = harness.call(.create(path: "/e", data: [], mode: .ephemeral), on: 1)
        _ = harness.call(.exists(path: "/e", watch: true), on: 2)
        let (requestID, outputs) = harness.send(.closeSession, on: 1)
        XCTAssertEqual(events(outputs, to: 2), [.watch(type: .deleted, path: "/e")])
        XCTAssertEqual(replies(outputs, to: 1), [Reply(requestID: requestID, opcode: .closeSession, result: .success(.empty))])
        XCTAssertEqual(closes(outputs), [], "the connection stays open")
        XCTAssertNil(harness.engine.namespace.session(owner.id))
        XCTAssertEqual(harness.call(.exists(path: "/e", watch: false), on: 2), .success(.exists(nil)))
        // The connection may open a new session.
        guard case .success(.session(let id, _, _)) = harness.call(.openSession(timeoutMilliseconds: 0, flags: []), on: 1)
        else { return XCTFail() }
        XCTAssertNotEqual(id, owner.id)
    }

    func testUnixDisconnectEndsTheSessionAtOnce() {
        let harness = EngineHarness()
        let owner = harness.openSession(1, transport: .unix)
        harness.openSession(2)
        _ = harness.call(.create(path: "/e", data: [], mode: .ephemeral), on: 1)
        _ = harness.call(.exists(path: "/e", watch: true), on: 2)
        harness.engine.connectionClosed(1, now: harness.now)
        let outputs = harness.engine.takeOutputs()
        XCTAssertEqual(events(outputs, to: 2), [.watch(type: .deleted, path: "/e")])
        XCTAssertNil(harness.engine.namespace.session(owner.id))
        XCTAssertEqual(harness.engine.sessionCount, 1)
    }

    func testKeepOnDisconnectKeepsAUnixSessionUntilItsTimeout() {
        let harness = EngineHarness()
        let owner = harness.openSession(1, transport: .unix, timeoutMilliseconds: 2_000, flags: .keepOnDisconnect)
        harness.openSession(2, timeoutMilliseconds: 60_000)
        _ = harness.call(.create(path: "/e", data: [], mode: .ephemeral), on: 1)
        _ = harness.call(.exists(path: "/e", watch: true), on: 2)
        harness.engine.connectionClosed(1, now: harness.now)
        XCTAssertEqual(harness.engine.takeOutputs(), [])
        harness.advance(1_999)
        XCTAssertEqual(harness.engine.takeOutputs(), [])
        XCTAssertNotNil(harness.engine.namespace.session(owner.id))
        harness.advance(1)
        XCTAssertEqual(events(harness.engine.takeOutputs(), to: 2), [.watch(type: .deleted, path: "/e")])
        XCTAssertNil(harness.engine.namespace.session(owner.id))
    }

    func testTCPSessionDetachesAndResumesWithQueuedEventsAfterTheReply() {
        let harness = EngineHarness()
        let owner = harness.openSession(1, transport: .tcp, timeoutMilliseconds: 10_000)
        harness.openSession(2)
        _ = harness.call(.create(path: "/a", data: [], mode: .persistent), on: 1)
        _ = harness.call(.create(path: "/e", data: [], mode: .ephemeral), on: 1)
        _ = harness.call(.get(path: "/a", watch: true), on: 1)
        _ = harness.call(.children(path: "/", watch: true), on: 1)
        harness.engine.connectionClosed(1, now: harness.now)
        XCTAssertEqual(harness.engine.takeOutputs(), [])

        // While detached: its ephemeral stays, and its watches fire into the queue.
        XCTAssertEqual(harness.call(.exists(path: "/e", watch: false), on: 2).isSuccessWithStat, true)
        _ = harness.call(.set(path: "/a", data: [1], expectedVersion: -1), on: 2)
        _ = harness.call(.create(path: "/b", data: [], mode: .persistent), on: 2)
        harness.advance(9_000)

        harness.connect(3, transport: .tcp)
        let (requestID, outputs) = harness.send(.resumeSession(sessionID: owner.id, secret: owner.secret), on: 3)
        XCTAssertEqual(outputs, [
            .send(3, .reply(Reply(requestID: requestID, opcode: .resumeSession, result: .success(.resumed(timeoutMilliseconds: 10_000))))),
            .send(3, .event(.watch(type: .dataChanged, path: "/a"))),
            .send(3, .event(.watch(type: .childrenChanged, path: "/"))),
        ])
        // Resumed: the deadline starts over, requests work, ephemerals are still its own.
        harness.advance(9_000)
        XCTAssertNotNil(harness.engine.namespace.session(owner.id))
        guard case .success(.data(let stat, _)) = harness.call(.get(path: "/e", watch: false), on: 3) else { return XCTFail() }
        XCTAssertEqual(stat.ephemeralOwner, owner.id)
    }

    func testResumeErrors() {
        let harness = EngineHarness()
        let owner = harness.openSession(1, transport: .tcp, timeoutMilliseconds: 1_000)
        harness.engine.connectionClosed(1, now: harness.now)
        harness.connect(2, transport: .tcp)
        XCTAssertEqual(errorCode(harness.call(.resumeSession(sessionID: owner.id &+ 1, secret: owner.secret), on: 2)),
                       .sessionExpired)
        var wrong = owner.secret
        wrong.low ^= 1
        XCTAssertEqual(errorCode(harness.call(.resumeSession(sessionID: owner.id, secret: wrong), on: 2)),
                       .sessionSecretMismatch)
        harness.advance(1_000)
        XCTAssertEqual(errorCode(harness.call(.resumeSession(sessionID: owner.id, secret: owner.secret), on: 2)),
                       .sessionExpired, "expired while detached")
    }

    func testResumeMovesTheSessionFromALiveConnection() {
        let harness = EngineHarness()
        let owner = harness.openSession(1, transport: .tcp)
        harness.connect(2, transport: .tcp)
        let (_, outputs) = harness.send(.resumeSession(sessionID: owner.id, secret: owner.secret), on: 2)
        XCTAssertEqual(closes(outputs), [1])
        XCTAssertEqual(replies(outputs, to: 2).first?.result, .success(.resumed(timeoutMilliseconds: 5_000)))
        // The old connection's close does not end the moved session.
        harness.engine.connectionClosed(1, now: harness.now)
        XCTAssertNotNil(harness.engine.namespace.session(owner.id))
        XCTAssertEqual(harness.call(.create(path: "/e", data: [], mode: .ephemeral), on: 2).isSuccess, true)
        // And moving a Unix session: the old Unix connection's close must not end it either.
        let unixOwner = harness.openSession(3, transport: .unix)
        harness.connect(4, transport: .unix)
        _ = harness.send(.resumeSession(sessionID: unixOwner.id, secret: unixOwner.secret), on: 4)
        harness.engine.connectionClosed(3, now: harness.now)
        XCTAssertNotNil(harness.engine.namespace.session(unixOwner.id))
    }

    /// Issue 8 item 4(a), the engine's part: frames that wait unread in the shell count as a
    /// heartbeat at the moment deadlines are judged; a connection with nothing waiting expires.
    func testInputWaitingUnreadCountsAsAHeartbeatBeforeExpiry() {
        let harness = EngineHarness()
        let busy = harness.openSession(1, timeoutMilliseconds: 1_000)
        let quiet = harness.openSession(2, timeoutMilliseconds: 1_000)
        _ = harness.engine.takeOutputs()
        // The loop was held for 5 s; connection 1's ping arrived meanwhile and waits unread.
        harness.now = harness.now.advanced(by: 5_000)
        harness.engine.inputWaiting(on: 1, now: harness.now)
        harness.engine.tick(now: harness.now)
        XCTAssertNotNil(harness.engine.namespace.session(busy.id))
        XCTAssertNil(harness.engine.namespace.session(quiet.id))
        XCTAssertEqual(events(harness.engine.takeOutputs(), to: 1), [])
        // Heard from at 5 s: it lives one timeout past that, no longer.
        harness.advance(1_000)
        XCTAssertNil(harness.engine.namespace.session(busy.id))
    }

    /// Requests in the same millisecond (a pipelined burst, read at one clock reading) touch their
    /// session once (`Engine.heartbeat`): interleaved sessions each keep their own heartbeat, and a
    /// later millisecond extends the deadline again.
    func testHeartbeatsInOneMillisecondKeepEverySessionAliveFromThatMillisecond() {
        let harness = EngineHarness()
        let first = harness.openSession(1, timeoutMilliseconds: 1_000)
        let second = harness.openSession(2, timeoutMilliseconds: 1_000)
        harness.advance(500)
        for connection: ConnectionID in [1, 2, 1, 1, 2] { XCTAssertEqual(harness.call(.ping, on: connection), .success(.empty)) }
        harness.advance(600)
        for _ in 0..<3 { XCTAssertEqual(harness.call(.ping, on: 1), .success(.empty)) }
        _ = harness.engine.takeOutputs()
        // The second session was last heard 999 ms ago: alive; a millisecond later it expires.
        harness.advance(399)
        XCTAssertNotNil(harness.engine.namespace.session(second.id))
        harness.advance(1)
        XCTAssertNil(harness.engine.namespace.session(second.id))
        // The first, heard 600 ms later, lives until a full timeout after that.
        harness.advance(599)
        XCTAssertNotNil(harness.engine.namespace.session(first.id))
        harness.advance(1)
        XCTAssertNil(harness.engine.namespace.session(first.id))
    }

    func testExpirySendsSessionExpiredToTheAttachedConnection() {
        let harness = EngineHarness()
        let owner = harness.openSession(1, timeoutMilliseconds: 1_000)
        _ = harness.call(.create(path: "/e", data: [], mode: .ephemeral), on: 1)
        XCTAssertEqual(harness.engine.nextDeadlineMilliseconds, harness.now.monotonicMilliseconds + 1_000)
        harness.advance(999)
        XCTAssertEqual(harness.engine.takeOutputs(), [])
        harness.advance(1)
        XCTAssertEqual(events(harness.engine.takeOutputs(), to: 1), [.sessionExpired(sessionID: owner.id)])
        // Until another session is opened, the connection hears why it has none (PROTOCOL.md §9.6).
        XCTAssertEqual(errorCode(harness.call(.get(path: "/", watch: false), on: 1)), .sessionExpired)
        XCTAssertEqual(errorCode(harness.call(.closeSession, on: 1)), .sessionExpired)
        guard case .success(.session) = harness.call(.openSession(timeoutMilliseconds: 0, flags: []), on: 1) else {
            return XCTFail("a new session on the same connection")
        }
        XCTAssertEqual(harness.call(.get(path: "/", watch: false), on: 1).isSuccess, true)
        _ = harness.call(.closeSession, on: 1)
        XCTAssertEqual(errorCode(harness.call(.get(path: "/", watch: false), on: 1)), .sessionRequired, "closed, not expired")
        harness.openSession(2)
        XCTAssertEqual(harness.call(.exists(path: "/e", watch: false), on: 2), .success(.exists(nil)))
    }

    func testRequestsAndPingsKeepTheSessionAlive() {
        let harness = EngineHarness()
        let owner = harness.openSession(1, timeoutMilliseconds: 1_000)
        for _ in 0..<5 {
            harness.advance(800)
            XCTAssertEqual(harness.call(.ping, on: 1), .success(.empty))
        }
        harness.advance(800)
        _ = harness.call(.get(path: "/", watch: false), on: 1)
        harness.advance(800)
        XCTAssertNotNil(harness.engine.namespace.session(owner.id))
        harness.advance(200)
        XCTAssertNil(harness.engine.namespace.session(owner.id))
    }

    func testDetachedEventQueueOverflowEndsTheSession() {
        let harness = EngineHarness { $0.detachedSessionEventsMax = 2 }
        let owner = harness.openSession(1, transport: .tcp)
        harness.openSession(2)
        for name in ["a", "b", "c"] {
            _ = harness.call(.create(path: "/" + name, data: [], mode: .persistent), on: 1)
            _ = harness.call(.get(path: "/" + name, watch: true), on: 1)
        }
        _ = harness.call(.create(path: "/mine", data: [], mode: .ephemeral), on: 1)
        _ = harness.call(.exists(path: "/mine", watch: true), on: 2)
        harness.engine.connectionClosed(1, now: harness.now)
        _ = harness.call(.set(path: "/a", data: [1], expectedVersion: -1), on: 2)
        _ = harness.call(.set(path: "/b", data: [1], expectedVersion: -1), on: 2)
        XCTAssertNotNil(harness.engine.namespace.session(owner.id), "two events fit")
        let (_, outputs) = harness.send(.set(path: "/c", data: [1], expectedVersion: -1), on: 2)
        XCTAssertNil(harness.engine.namespace.session(owner.id), "the third overflows")
        XCTAssertEqual(events(outputs, to: 2), [.watch(type: .deleted, path: "/mine")])
        harness.connect(3, transport: .tcp)
        XCTAssertEqual(errorCode(harness.call(.resumeSession(sessionID: owner.id, secret: owner.secret), on: 3)), .sessionExpired)
    }
}

extension Result where Success == ReplyBody, Failure == ReplyError {
    var isSuccess: Bool { if case .success = self { true } else { false } }
    var isSuccessWithStat: Bool { if case .success(.exists(.some)) = self { true } else { false } }
}
