@testable import BatonEngine
import BatonProtocol
import XCTest

/// Suspended, then resumed (PROTOCOL.md §12.8): the engine's side, driven as the ZooKeeper driver
/// drives it. The lock recipe runs over the embedded namespace here; what is under test is who is
/// told what when the backend's connection goes and comes back.
final class EngineBackendResumeTests: XCTestCase {
    func testResumedGoesToSuspendedHoldersThatOptedInAndNeverToWaiters() throws {
        let harness = EngineHarness()
        harness.openSession(1, flags: [.resumedEvents])
        harness.openSession(2, flags: [.resumedEvents])
        harness.openSession(3) // a version-1 client that does not know lockResumed
        let first = harness.send(.acquire(LockRequest(path: "/a")), on: 1)
        let hold = try XCTUnwrap(granted(first.outputs, to: 1, requestID: first.requestID))
        let waiting = harness.send(.acquire(LockRequest(path: "/a")), on: 2)
        XCTAssertNil(granted(waiting.outputs, to: 2, requestID: waiting.requestID))
        let other = harness.send(.acquire(LockRequest(path: "/b")), on: 3)
        let otherHold = try XCTUnwrap(granted(other.outputs, to: 3, requestID: other.requestID))

        harness.engine.backendSuspended(now: harness.now)
        let suspended = harness.engine.takeOutputs()
        XCTAssertEqual(events(suspended, to: 1), [.lockSuspended(node: hold.node, token: hold.token)])
        XCTAssertEqual(events(suspended, to: 2), [], "a waiter holds nothing to suspend")
        XCTAssertEqual(events(suspended, to: 3), [.lockSuspended(node: otherHold.node, token: otherHold.token)])
        XCTAssertEqual(harness.call(.checkToken(path: "/a", token: hold.token), on: 1), .success(.tokenStatus(current: false)))

        harness.engine.backendResumed(now: harness.now)
        let resumed = harness.engine.takeOutputs()
        XCTAssertEqual(events(resumed, to: 1), [.lockResumed(node: hold.node, token: hold.token)])
        XCTAssertEqual(events(resumed, to: 2), [], "a waiter was never suspended")
        XCTAssertEqual(events(resumed, to: 3), [], "a session that did not opt in never sees the new kind")
        XCTAssertEqual(harness.call(.checkToken(path: "/a", token: hold.token), on: 1), .success(.tokenStatus(current: true)))
        XCTAssertEqual(harness.call(.checkToken(path: "/b", token: otherHold.token), on: 3), .success(.tokenStatus(current: true)))

        // Resumed once: another reconnect report without a suspension in between tells nobody.
        harness.engine.backendResumed(now: harness.now)
        XCTAssertEqual(events(harness.engine.takeOutputs(), to: 1), [])
    }

    func testNeitherAHoldReleasedWhileSuspendedNorItsSuccessorIsToldResumed() throws {
        let harness = EngineHarness()
        harness.openSession(1, flags: [.resumedEvents])
        harness.openSession(2, flags: [.resumedEvents])
        let first = harness.send(.acquire(LockRequest(path: "/a")), on: 1)
        let hold = try XCTUnwrap(granted(first.outputs, to: 1, requestID: first.requestID))
        let waiting = harness.send(.acquire(LockRequest(path: "/a")), on: 2)

        harness.engine.backendSuspended(now: harness.now)
        _ = harness.engine.takeOutputs()
        let release = harness.send(.release(node: hold.node, token: hold.token), on: 1)
        let next = try XCTUnwrap(granted(release.outputs, to: 2, requestID: waiting.requestID),
                                 "the embedded recipe grants the waiter at once")

        harness.engine.backendResumed(now: harness.now)
        let resumed = harness.engine.takeOutputs()
        XCTAssertEqual(events(resumed, to: 1), [], "the released hold is over")
        XCTAssertEqual(events(resumed, to: 2), [], "granted after the suspension: it was never told suspended")
        XCTAssertEqual(harness.call(.checkToken(path: "/a", token: next.token), on: 2), .success(.tokenStatus(current: true)))
    }
}
