@testable import BatonEngine
import BatonProtocol
import XCTest

/// `acquireAll` (PROTOCOL.md §12.14): all or none, in path order, one token per lock.
final class EngineLockSetTests: XCTestCase {
    private func set(_ paths: [String], wait: UInt32 = LockRequest.waitForever, lease: UInt32 = 0) -> Request {
        .acquireAll(locks: paths.map { LockSetMember(path: $0) }, waitMilliseconds: wait, leaseMilliseconds: lease)
    }

    private func holds(_ outputs: [EngineOutput], to connection: ConnectionID, requestID: UInt32) -> [LockSetHold]? {
        for reply in replies(outputs, to: connection) where reply.requestID == requestID {
            if case .success(.grantedAll(let holds)) = reply.result { return holds }
        }
        return nil
    }

    private func failure(_ outputs: [EngineOutput], to connection: ConnectionID, requestID: UInt32) -> ReplyError? {
        for reply in replies(outputs, to: connection) where reply.requestID == requestID {
            if case .failure(let error) = reply.result { return error }
        }
        return nil
    }

    /// Holders of a lock as inspect lists them.
    private func holders(_ harness: EngineHarness, _ path: String, on connection: ConnectionID) -> [LockEntry] {
        guard case .success(.lockEntries(let entries)) = harness.call(.inspect(path: path), on: connection) else { return [] }
        return entries.filter { $0.position == .holder }
    }

    func testASetIsAnsweredOnceWithAHoldPerLockInRequestOrder() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        let sent = harness.send(.acquireAll(locks: [LockSetMember(path: "/locks/b"), LockSetMember(path: "/locks/a", kind: .shared)],
                                            waitMilliseconds: LockRequest.waitForever, leaseMilliseconds: 0), on: 1)
        XCTAssertEqual(replies(sent.outputs, to: 1).map(\.opcode), [.acquireAll])
        let held = try XCTUnwrap(holds(sent.outputs, to: 1, requestID: sent.requestID))
        XCTAssertEqual(held.map { String($0.node.prefix(8)) }, ["/locks/b", "/locks/a"])
        XCTAssertNotEqual(held[0].token, held[1].token)
        XCTAssertEqual(harness.call(.checkToken(path: "/locks/b", token: held[0].token), on: 2), .success(.tokenStatus(current: true)))
        XCTAssertEqual(harness.call(.checkToken(path: "/locks/a", token: held[1].token), on: 2), .success(.tokenStatus(current: true)))
        for hold in held {
            XCTAssertEqual(harness.call(.release(node: hold.node, token: hold.token), on: 1), .success(.empty))
        }
        XCTAssertEqual(holders(harness, "/locks/a", on: 2), [])
    }

    func testNoPartialGrantReachesTheClientAndATryTakesNothing() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        harness.openSession(3)
        let b = try XCTUnwrap(grantOf(harness, .acquire(LockRequest(path: "/locks/b")), on: 3))
        let waiting = harness.send(set(["/locks/a", "/locks/b"]), on: 1)
        XCTAssertEqual(replies(waiting.outputs, to: 1), [], "a set with one lock busy is not answered")
        let tried = harness.send(set(["/locks/c", "/locks/b"], wait: 0), on: 2)
        XCTAssertEqual(failure(tried.outputs, to: 2, requestID: tried.requestID)?.code, .lockBusy)
        XCTAssertEqual(holders(harness, "/locks/c", on: 2), [], "the try released the lock it took")
        let released = harness.send(.release(node: b.node, token: b.token), on: 3)
        let held = try XCTUnwrap(holds(released.outputs, to: 1, requestID: waiting.requestID))
        XCTAssertEqual(held.count, 2)
    }

    func testSetsInOppositeOrderDoNotDeadlock() throws {
        let harness = EngineHarness()
        for connection: ConnectionID in 1...3 { harness.openSession(connection) }
        let a = try XCTUnwrap(grantOf(harness, .acquire(LockRequest(path: "/locks/a")), on: 3))
        let first = harness.send(set(["/locks/a", "/locks/b"]), on: 1)
        let second = harness.send(set(["/locks/b", "/locks/a"]), on: 2)
        XCTAssertEqual(replies(first.outputs + second.outputs, to: 1) + replies(second.outputs, to: 2), [], "both wait, neither refused")
        XCTAssertEqual(holders(harness, "/locks/b", on: 3), [], "the second set waits for /locks/a before it takes /locks/b")
        let afterA = harness.send(.release(node: a.node, token: a.token), on: 3)
        let firstHolds = try XCTUnwrap(holds(afterA.outputs, to: 1, requestID: first.requestID))
        XCTAssertNil(holds(afterA.outputs, to: 2, requestID: second.requestID))
        var outputs: [EngineOutput] = []
        for hold in firstHolds { outputs += harness.send(.release(node: hold.node, token: hold.token), on: 1).outputs }
        XCTAssertEqual(try XCTUnwrap(holds(outputs, to: 2, requestID: second.requestID)).count, 2)

        // The same with plain acquires closes a cycle (answered deadlock, §12.10): the sets avoid it.
        let plain = EngineHarness()
        plain.openSession(1)
        plain.openSession(2)
        XCTAssertNotNil(grantOf(plain, .acquire(LockRequest(path: "/locks/a")), on: 1))
        XCTAssertNotNil(grantOf(plain, .acquire(LockRequest(path: "/locks/b")), on: 2))
        _ = plain.send(.acquire(LockRequest(path: "/locks/b")), on: 1)
        XCTAssertEqual(errorCode(plain.call(.acquire(LockRequest(path: "/locks/a")), on: 2)), .deadlock)
    }

    func testTheWaitBoundsTheWholeSetAndATimeoutReleasesWhatItTook() throws {
        let harness = EngineHarness()
        for connection: ConnectionID in 1...3 { harness.openSession(connection, timeoutMilliseconds: 60_000) }
        XCTAssertNotNil(grantOf(harness, .acquire(LockRequest(path: "/locks/b")), on: 2))
        let waiting = harness.send(set(["/locks/a", "/locks/b"], wait: 1_000), on: 1)
        XCTAssertEqual(holders(harness, "/locks/a", on: 3).count, 1, "the first lock is taken while the set waits")
        harness.advance(999)
        XCTAssertEqual(replies(harness.engine.takeOutputs(), to: 1), [])
        harness.advance(1)
        let error = try XCTUnwrap(failure(harness.engine.takeOutputs(), to: 1, requestID: waiting.requestID))
        XCTAssertEqual(error.code, .lockTimeout)
        XCTAssertTrue(error.message.contains("/locks/b"), error.message)
        XCTAssertNotNil(grantOf(harness, .acquire(LockRequest(path: "/locks/a", waitMilliseconds: 0)), on: 3), "released")
    }

    func testCancelAndAClosedConnectionReleaseTheSet() throws {
        let harness = EngineHarness()
        for connection: ConnectionID in 1...3 { harness.openSession(connection) }
        XCTAssertNotNil(grantOf(harness, .acquire(LockRequest(path: "/locks/b")), on: 2))
        let waiting = harness.send(set(["/locks/a", "/locks/b"]), on: 1)
        let cancelled = harness.send(.cancel(acquireRequestID: waiting.requestID), on: 1)
        XCTAssertEqual(replies(cancelled.outputs, to: 1).map(\.requestID), [waiting.requestID, cancelled.requestID])
        XCTAssertEqual(failure(cancelled.outputs, to: 1, requestID: waiting.requestID)?.code, .lockCancelled)
        XCTAssertEqual(holders(harness, "/locks/a", on: 3), [])

        _ = harness.send(set(["/locks/a", "/locks/b"]), on: 1)
        XCTAssertEqual(holders(harness, "/locks/a", on: 3).count, 1)
        harness.engine.connectionClosed(1, now: harness.now)
        _ = harness.engine.takeOutputs()
        XCTAssertEqual(holders(harness, "/locks/a", on: 3), [])
        XCTAssertEqual(harness.engine.locks.sets.count, 0)
        XCTAssertEqual(harness.engine.locks.setOfNode.count, 0)
    }

    func testAHoldLostBeforeTheReplyFailsTheSetWithoutAnEvent() throws {
        let harness = EngineHarness()
        for connection: ConnectionID in 1...3 { harness.openSession(connection, timeoutMilliseconds: 60_000) }
        XCTAssertNotNil(grantOf(harness, .acquire(LockRequest(path: "/locks/b")), on: 2))
        let waiting = harness.send(set(["/locks/a", "/locks/b"], lease: 500), on: 1)
        harness.advance(500)
        let outputs = harness.engine.takeOutputs()
        XCTAssertEqual(failure(outputs, to: 1, requestID: waiting.requestID)?.code, .lockLost)
        XCTAssertEqual(events(outputs, to: 1), [], "the client never learned the node")
        XCTAssertEqual(harness.engine.lockPendingAcquires(on: 1), [], "the wait for /locks/b ended too")
    }

    /// In one tick the set's first hold runs out and then its second lock is granted to it: the set has
    /// failed by the time that grant is routed, and the lock is given back, not left held by nobody.
    /// (Found by the engine lock simulation.)
    func testAGrantThatArrivesAfterTheSetFailedIsGivenBack() throws {
        let harness = EngineHarness()
        for connection: ConnectionID in 1...3 { harness.openSession(connection, timeoutMilliseconds: 60_000) }
        XCTAssertNotNil(grantOf(harness, .acquire(LockRequest(path: "/locks/c", leaseMilliseconds: 600)), on: 2))
        let waiting = harness.send(set(["/locks/b", "/locks/c"], lease: 500), on: 1)
        harness.advance(600)
        let outputs = harness.engine.takeOutputs()
        XCTAssertEqual(failure(outputs, to: 1, requestID: waiting.requestID)?.code, .lockLost)
        XCTAssertNotNil(grantOf(harness, .acquire(LockRequest(path: "/locks/c", waitMilliseconds: 0)), on: 3), "/locks/c is free")
        XCTAssertNotNil(grantOf(harness, .acquire(LockRequest(path: "/locks/b", waitMilliseconds: 0)), on: 3), "/locks/b is free")
    }

    func testMalformedSetsAreRefusedAtOnce() {
        let harness = EngineHarness()
        harness.openSession(1)
        XCTAssertEqual(errorCode(harness.call(set([]), on: 1)), .invalidArgument)
        XCTAssertEqual(errorCode(harness.call(set(["/locks/a", "/locks/a"]), on: 1)), .invalidArgument)
        XCTAssertEqual(errorCode(harness.call(set((0...LockSetMember.countMax).map { "/locks/\($0)" }), on: 1)), .invalidArgument)
        XCTAssertEqual(errorCode(harness.call(set(["/locks/a", "bad"]), on: 1)), .invalidPath)
        XCTAssertEqual(errorCode(harness.call(.acquireAll(locks: [LockSetMember(path: "/locks/a", permits: 2)],
                                                          waitMilliseconds: 0, leaseMilliseconds: 0), on: 1)), .invalidArgument)
        XCTAssertEqual(harness.engine.lockPendingAcquires(on: 1), [])
    }

    private func grantOf(_ harness: EngineHarness, _ request: Request, on connection: ConnectionID) -> (node: String, token: UInt64)? {
        let sent = harness.send(request, on: connection)
        return granted(sent.outputs, to: connection, requestID: sent.requestID)
    }
}
