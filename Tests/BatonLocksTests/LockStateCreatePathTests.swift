@testable import BatonLocks
import BatonProtocol
import BatonTestSupport
import XCTest

/// A lock's waiter-node create paths are kept per session while several sessions take turns on it
/// (`LockState.createPath`): each is exactly the path `WaiterName.createPath` makes, for its session
/// and kind, however the sessions and kinds alternate; the table stays bounded and goes when the lock
/// goes idle.
final class LockStateCreatePathTests: XCTestCase {
    func testCreatePathsAreTheirSessionsAndKindsWhileSessionsTakeTurns() {
        let lock = LockState(path: "/locks/turns")
        let members = (1...2).map { id in
            Waiter(id: UInt64(id), session: 100, clientName: "", request: LockRequest(path: lock.path),
                   lock: lock, queuedMilliseconds: 0)
        }
        for waiter in members { lock.enter(waiter) }
        var generator = SeededGenerator(seed: 5)
        let kinds: [LockKind] = [.exclusive, .shared, .semaphore]
        for step in 0..<3_000 {
            // Few sessions first (all kept), then more than the table holds.
            let session = UInt64.random(in: 1...(step < 1_000 ? 20 : 200), using: &generator)
            let kind = kinds.randomElement(using: &generator)!
            XCTAssertEqual(lock.createPath(kind: kind, session: session),
                           WaiterName.createPath(lockPath: lock.path, kind: kind, session: session), "\(step)")
            XCTAssertLessThanOrEqual(lock.createPathCount, LockState.createPathsMax)
        }
        XCTAssertGreaterThan(lock.createPathCount, 0)
        for waiter in members { XCTAssertTrue(lock.leave(waiter)) }
        lock.clearForIdle()
        XCTAssertEqual(lock.createPathCount, 0, "dropped with the lock's last member")
        XCTAssertEqual(lock.createPath(kind: .shared, session: 9), WaiterName.createPath(lockPath: lock.path, kind: .shared, session: 9))
        XCTAssertEqual(lock.createPathCount, 0, "a lock with one member keeps only its last path")
    }
}
