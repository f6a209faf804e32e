@testable import BatonEngine
import BatonProtocol
import XCTest

/// `acquireOwned`, `renew` and `deadlock` through the engine: opcodes and reply bodies on the wire's
/// terms, and lockLost routing of reentrant holds (PROTOCOL.md §12.5, §12.9, §12.10).
final class EngineLockAPITests: XCTestCase {
    func testAcquireOwnedAnswersHeldWithACountAndTheLastReleaseEndsIt() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        let first = harness.send(.acquire(LockRequest(path: "/locks/r", owner: "worker-1")), on: 1)
        XCTAssertEqual(replies(first.outputs, to: 1).first?.opcode, .acquireOwned)
        XCTAssertEqual(holdCount(first.outputs, to: 1, requestID: first.requestID), 1)
        let held = try XCTUnwrap(granted(first.outputs, to: 1, requestID: first.requestID))
        let second = harness.send(.acquire(LockRequest(path: "/locks/r", owner: "worker-1")), on: 1)
        XCTAssertEqual(holdCount(second.outputs, to: 1, requestID: second.requestID), 2)
        XCTAssertEqual(granted(second.outputs, to: 1, requestID: second.requestID)?.token, held.token)
        let waiting = harness.send(.acquire(LockRequest(path: "/locks/r")), on: 2)

        XCTAssertEqual(harness.call(.release(node: held.node, token: held.token), on: 1), .success(.empty))
        XCTAssertNotNil(harness.engine.namespace.node(at: held.node), "one count left")
        let last = harness.send(.release(node: held.node, token: held.token), on: 1)
        XCTAssertNotNil(granted(last.outputs, to: 2, requestID: waiting.requestID))
        XCTAssertNil(harness.engine.namespace.node(at: held.node))
    }

    /// The engine keeps its holders by token: a release naming one hold's node with another's token
    /// ends neither, and each hold's own release takes its entry out (none is left behind).
    func testAReleaseCrossingTwoHoldsNodeAndTokenEndsNeither() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        let a = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        let heldA = try XCTUnwrap(granted(a.outputs, to: 1, requestID: a.requestID))
        let b = harness.send(.acquire(LockRequest(path: "/locks/b")), on: 1)
        let heldB = try XCTUnwrap(granted(b.outputs, to: 1, requestID: b.requestID))
        XCTAssertEqual(harness.engine.locks.holders.count, 2)
        XCTAssertEqual(errorCode(harness.call(.release(node: heldB.node, token: heldA.token), on: 1)), .lockLost)
        XCTAssertEqual(errorCode(harness.call(.release(node: heldA.node, token: heldB.token), on: 1)), .lockLost)
        XCTAssertEqual(errorCode(harness.call(.release(node: heldA.node, token: heldA.token), on: 2)), .notHolder)
        XCTAssertEqual(harness.engine.locks.holders.count, 2, "both holds still routed")
        XCTAssertNotNil(harness.engine.namespace.node(at: heldA.node))
        XCTAssertNotNil(harness.engine.namespace.node(at: heldB.node))
        XCTAssertEqual(harness.call(.release(node: heldA.node, token: heldA.token), on: 1), .success(.empty))
        XCTAssertEqual(harness.call(.release(node: heldB.node, token: heldB.token), on: 1), .success(.empty))
        XCTAssertTrue(harness.engine.locks.holders.isEmpty)
    }

    func testALeaseEndsAReentrantHoldWithOneCountLeftAndTellsTheHolder() throws {
        let harness = EngineHarness()
        harness.openSession(1, timeoutMilliseconds: 60_000)
        let first = harness.send(.acquire(LockRequest(path: "/locks/r", leaseMilliseconds: 1_000, owner: "t")), on: 1)
        let held = try XCTUnwrap(granted(first.outputs, to: 1, requestID: first.requestID))
        _ = harness.send(.acquire(LockRequest(path: "/locks/r", owner: "t")), on: 1)
        XCTAssertEqual(harness.call(.release(node: held.node, token: held.token), on: 1), .success(.empty))
        harness.advance(1_000)
        XCTAssertEqual(events(harness.engine.takeOutputs(), to: 1),
                       [.lockLost(node: held.node, token: held.token, reason: .leaseExpired)])
    }

    func testASessionsSecondExclusiveAcquireIsRefusedAtOnce() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        XCTAssertEqual(harness.call(.acquire(LockRequest(path: "/locks/s")), on: 1).isSuccess, true)
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/locks/s")), on: 1)), .lockHeldBySession)
        XCTAssertEqual(harness.engine.lockPendingAcquires(on: 1), [], "nothing left waiting")
    }

    func testRenewOverTheEngine() throws {
        let harness = EngineHarness()
        harness.openSession(1, timeoutMilliseconds: 60_000)
        harness.openSession(2, timeoutMilliseconds: 60_000)
        let acquire = harness.send(.acquire(LockRequest(path: "/locks/l", leaseMilliseconds: 1_000)), on: 1)
        let held = try XCTUnwrap(granted(acquire.outputs, to: 1, requestID: acquire.requestID))
        let plain = harness.send(.acquire(LockRequest(path: "/locks/plain")), on: 2)
        let unleased = try XCTUnwrap(granted(plain.outputs, to: 2, requestID: plain.requestID))
        harness.advance(900)
        XCTAssertEqual(harness.call(.renew(node: held.node, token: held.token, leaseMilliseconds: 1_000), on: 1), .success(.empty))
        harness.advance(900)
        XCTAssertEqual(events(harness.engine.takeOutputs(), to: 1), [], "renewed: still held")
        XCTAssertEqual(errorCode(harness.call(.renew(node: unleased.node, token: unleased.token, leaseMilliseconds: 10), on: 2)), .noLease)
        XCTAssertEqual(errorCode(harness.call(.renew(node: held.node, token: held.token, leaseMilliseconds: 10), on: 2)), .notHolder)
        harness.advance(100)
        XCTAssertEqual(events(harness.engine.takeOutputs(), to: 1), [.lockLost(node: held.node, token: held.token, reason: .leaseExpired)])
        XCTAssertEqual(errorCode(harness.call(.renew(node: held.node, token: held.token, leaseMilliseconds: 10), on: 1)), .lockLost)
        XCTAssertEqual(errorCode(harness.call(.renew(node: "/locks/l/../x", token: 1, leaseMilliseconds: 10), on: 1)), .invalidPath)
    }

    func testRevocationRequestsGoToRevocableHoldersBeforeTheReply() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        harness.openSession(3)
        let acquire = harness.send(.acquire(LockRequest(path: "/locks/v", owner: "job", revocable: true)), on: 1)
        let held = try XCTUnwrap(granted(acquire.outputs, to: 1, requestID: acquire.requestID))
        _ = harness.send(.acquire(LockRequest(path: "/locks/v")), on: 2) // a waiter is not asked
        let request = harness.send(.requestRevocation(path: "/locks/v"), on: 3)
        let requester = try XCTUnwrap(harness.engine.connections[3]?.sessionID)
        XCTAssertEqual(events(request.outputs, to: 1), [.revocationRequested(node: held.node, token: held.token, requester: requester)])
        XCTAssertEqual(events(request.outputs, to: 2), [])
        XCTAssertEqual(replies(request.outputs, to: 3).map(\.result), [.success(.revocation(holdersAsked: 1))])
        let eventIndex = request.outputs.firstIndex { if case .send(1, .event) = $0 { true } else { false } }!
        let replyIndex = request.outputs.firstIndex { if case .send(3, .reply) = $0 { true } else { false } }!
        XCTAssertLessThan(eventIndex, replyIndex)
        XCTAssertNotNil(harness.engine.namespace.node(at: held.node), "a request ends nothing")

        let plain = harness.send(.acquire(LockRequest(path: "/locks/p")), on: 2)
        XCTAssertNotNil(granted(plain.outputs, to: 2, requestID: plain.requestID))
        XCTAssertEqual(harness.call(.requestRevocation(path: "/locks/p"), on: 3), .success(.revocation(holdersAsked: 0)))
        XCTAssertEqual(errorCode(harness.call(.requestRevocation(path: "/locks/missing"), on: 3)), .noNode)
    }

    func testALockDelayHoldsBackTheNextGrantAfterTheHoldersSessionExpires() throws {
        let harness = EngineHarness()
        harness.openSession(1, timeoutMilliseconds: 1_000)
        harness.openSession(2, timeoutMilliseconds: 60_000)
        let holder = harness.send(.acquire(LockRequest(path: "/locks/d", owner: "o", lockDelayMilliseconds: 5_000)), on: 1)
        XCTAssertNotNil(granted(holder.outputs, to: 1, requestID: holder.requestID))
        let waiting = harness.send(.acquire(LockRequest(path: "/locks/d")), on: 2)
        harness.advance(1_500) // session 1 expires
        XCTAssertNil(granted(harness.engine.takeOutputs(), to: 2, requestID: waiting.requestID), "inside the delay")
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/locks/d", waitMilliseconds: 0, owner: "try")), on: 2)),
                       .lockBusy)
        harness.advance(4_999) // the delay runs 5 s from the expiry, at 1.5 s
        XCTAssertNil(granted(harness.engine.takeOutputs(), to: 2, requestID: waiting.requestID), "still inside")
        harness.advance(1)
        XCTAssertNotNil(granted(harness.engine.takeOutputs(), to: 2, requestID: waiting.requestID), "when it ends")
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/locks/e", owner: "o", lockDelayMilliseconds: 60_001)), on: 2)),
                       .invalidArgument)
    }

    func testCrossedAcquiresAreADeadlockForTheOneThatClosesTheCycle() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        let one = harness.send(.acquire(LockRequest(path: "/locks/one")), on: 1)
        let two = harness.send(.acquire(LockRequest(path: "/locks/two")), on: 2)
        let twoHeld = try XCTUnwrap(granted(two.outputs, to: 2, requestID: two.requestID))
        XCTAssertNotNil(granted(one.outputs, to: 1, requestID: one.requestID))
        let waits = harness.send(.acquire(LockRequest(path: "/locks/two")), on: 1)
        XCTAssertEqual(replies(waits.outputs, to: 1), [], "no cycle yet: it waits")
        let closing = harness.call(.acquire(LockRequest(path: "/locks/one")), on: 2)
        XCTAssertEqual(errorCode(closing), .deadlock)
        let release = harness.send(.release(node: twoHeld.node, token: twoHeld.token), on: 2)
        XCTAssertNotNil(granted(release.outputs, to: 1, requestID: waits.requestID))
    }
}
