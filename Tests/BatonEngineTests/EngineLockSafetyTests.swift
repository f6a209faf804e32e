@testable import BatonEngine
import BatonLocks
import BatonNamespace
import BatonProtocol
import XCTest

/// Issue 8: no sequence of client requests ends another hold or wedges a lock (PROTOCOL.md §12.1, §12.6).
final class EngineLockSafetyTests: XCTestCase {
    // MARK: Item 1: a stale release names an ended hold

    func testAStaleReleaseAfterTheLockNodeCameBackIsLockLostAndTheLaterHoldStays() throws {
        for removal in ["delete", "sweep"] {
            let harness = EngineHarness()
            harness.openSession(1)
            let first = harness.send(.acquire(LockRequest(path: "/reuse/L")), on: 1)
            let held = try XCTUnwrap(granted(first.outputs, to: 1, requestID: first.requestID))
            XCTAssertEqual(harness.call(.release(node: held.node, token: held.token), on: 1), .success(.empty))
            if removal == "delete" {
                XCTAssertEqual(harness.call(.delete(path: "/reuse/L", expectedVersion: anyVersion), on: 1), .success(.empty))
            } else {
                harness.advance(harness.engine.configuration.containerGraceMilliseconds + 1)
            }
            XCTAssertNil(harness.engine.namespace.node(at: "/reuse/L"), removal)
            let second = harness.send(.acquire(LockRequest(path: "/reuse/L")), on: 1)
            let again = try XCTUnwrap(granted(second.outputs, to: 1, requestID: second.requestID))
            XCTAssertEqual(again.node, held.node, "\(removal): the path repeats")

            // The first release, delayed or retried, arrives now.
            XCTAssertEqual(errorCode(harness.call(.release(node: held.node, token: held.token), on: 1)), .lockLost, removal)
            XCTAssertEqual(harness.call(.checkToken(path: "/reuse/L", token: again.token), on: 1),
                           .success(.tokenStatus(current: true)), "\(removal): the second hold is intact")
            XCTAssertNotNil(harness.engine.namespace.node(at: again.node))
            XCTAssertEqual(harness.call(.release(node: again.node, token: again.token), on: 1), .success(.empty))
        }
    }
}
