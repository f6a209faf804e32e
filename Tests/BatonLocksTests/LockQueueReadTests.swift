import BatonLocks
import BatonProtocol
import XCTest

/// The queue as read from the namespace (what a sidecar answers `checkToken`/`inspect` from for holders
/// it does not know itself) agrees with the recipe's grants.
final class LockQueueReadTests: XCTestCase {
    private func names(_ text: String) -> [WaiterName] {
        text.split(separator: " ").enumerated().map { index, marker in
            let kind: LockKind = marker == "x" ? .exclusive : marker == "r" ? .shared : .semaphore
            return WaiterName(kind: kind, session: 1, sequence: UInt64(index))
        }
    }

    func testEntitlementFollowsTheKindRules() {
        XCTAssertEqual(LockEntitlement.entitled(names("x x r"), permits: nil), [true, false, false])
        XCTAssertEqual(LockEntitlement.entitled(names("r r x r"), permits: nil), [true, true, false, false])
        XCTAssertEqual(LockEntitlement.entitled(names("s s s"), permits: 2), [true, true, false])
        // A node of the other family is refused and about to go: it and everything behind it wait.
        XCTAssertEqual(LockEntitlement.entitled(names("r s r"), permits: nil), [true, false, false])
        XCTAssertEqual(LockEntitlement.entitled(names("s r s"), permits: 3), [true, false, false])
        XCTAssertEqual(LockEntitlement.entitled([], permits: nil), [])
    }

    private func read(_ harness: LockHarness, _ path: String, _ scope: LockQueueRead.Scope) -> Result<[LockQueueEntry], ReplyError>? {
        var outcome: Result<[LockQueueEntry], ReplyError>?
        LockQueueRead.read(harness.namespace, lockPath: path, scope: scope) { outcome = $0 }
        harness.settle()
        return outcome
    }

    func testReadQueueNamesTheGrantedTokensAsEntitled() throws {
        for delivery in [MemoryLockNamespace.Delivery.immediate, .deferred] {
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 7, kind: .shared)
            harness.acquire(2, session: 8, kind: .shared)
            harness.acquire(3, session: 9, kind: .exclusive)
            let granted = harness.takeEffects().compactMap { effect -> UInt64? in
                if case .granted(_, _, let token, _) = effect { return token } else { return nil }
            }
            XCTAssertEqual(granted.count, 2)
            guard case .success(let entries)? = read(harness, "/locks/a", .all) else { return XCTFail("read") }
            XCTAssertEqual(entries.map(\.entitled), [true, true, false])
            XCTAssertEqual(entries.filter(\.entitled).compactMap(\.stat?.createdTransaction), granted)
            XCTAssertNotNil(entries[2].stat, "scope .all reads every node")
            guard case .success(let only)? = read(harness, "/locks/a", .entitled) else { return XCTFail("read") }
            XCTAssertNil(only[2].stat, "scope .entitled reads only the entitled nodes")
            guard case .failure(let error)? = read(harness, "/locks/none", .all) else { return XCTFail("read of no lock") }
            XCTAssertEqual(error.code, .noNode)
        }
    }
}
