@testable import BatonEngine
import BatonProtocol
import XCTest

/// The lock counts the metrics endpoint exports, through grants, hand-offs, timeouts and session ends.
final class EngineStatisticsTests: XCTestCase {
    private func counts(_ harness: EngineHarness) -> [Int?] {
        let statistics = harness.engine.statistics
        return [statistics.lockHolders, statistics.lockWaiters]
    }

    func testLockHoldersAndWaitersFollowTheQueues() throws {
        let harness = EngineHarness()
        XCTAssertEqual(counts(harness), [0, 0], "no lock used yet")
        for connection: ConnectionID in 1...4 { harness.openSession(connection) }

        let first = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        let held = try XCTUnwrap(granted(first.outputs, to: 1, requestID: first.requestID))
        XCTAssertEqual(counts(harness), [1, 0])
        let second = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 2)
        _ = harness.send(.acquire(LockRequest(path: "/locks/a", waitMilliseconds: 500)), on: 3)
        XCTAssertEqual(counts(harness), [1, 2])
        // A semaphore of two on another path: both hold at once.
        _ = harness.send(.acquire(LockRequest(path: "/locks/s", kind: .semaphore, permits: 2)), on: 4)
        _ = harness.send(.acquire(LockRequest(path: "/locks/s", kind: .semaphore, permits: 2)), on: 1)
        XCTAssertEqual(counts(harness), [3, 2])

        harness.advance(600)  // the third acquire times out
        XCTAssertEqual(counts(harness), [3, 1])

        let release = harness.send(.release(node: held.node, token: held.token), on: 1)
        XCTAssertNotNil(granted(release.outputs, to: 2, requestID: second.requestID), "the lock passes on")
        XCTAssertEqual(counts(harness), [3, 0])

        harness.engine.connectionClosed(4, now: harness.now)  // a Unix session ends with its hold
        _ = harness.engine.takeOutputs()
        XCTAssertEqual(counts(harness), [2, 0])
        _ = harness.call(.closeSession, on: 1)
        _ = harness.call(.closeSession, on: 2)
        XCTAssertEqual(counts(harness), [0, 0])
    }
}
