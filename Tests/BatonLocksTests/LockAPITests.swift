import BatonLocks
import BatonProtocol
import XCTest

/// Reentrancy (owner tokens), lease renewal and deadlock detection in the lock manager
/// (PROTOCOL.md §12.5, §12.9, §12.10), with answers delivered at once and deferred.
final class LockAPITests: XCTestCase {
    // MARK: Reentrancy

    func testOwnerReacquiresTheSameHoldAndTheNodeGoesWithTheLastRelease() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1, owner: "thread-1")
            let first = harness.takeEffects().grants
            XCTAssertEqual(first.map(\.ticket), [1], "\(delivery)")
            harness.acquire(2, session: 1, owner: "thread-1")
            let again = harness.takeEffects().reentries
            XCTAssertEqual(again.map(\.ticket), [2])
            XCTAssertEqual(again.first?.node, first[0].node, "same hold")
            XCTAssertEqual(again.first?.token, first[0].token, "same fencing token")
            XCTAssertEqual(again.first?.holdCount, 2)
            XCTAssertEqual(harness.waiterNodes().count, 1, "nothing created")
            harness.acquire(3, session: 2) // another session waits
            XCTAssertTrue(harness.takeEffects().grants.isEmpty)

            harness.release(first[0].node, session: 1, ticket: 4)
            var effects = harness.takeEffects()
            XCTAssertEqual(effects.releasedTickets, [4])
            XCTAssertTrue(effects.grants.isEmpty, "one count left: still held (\(delivery))")
            XCTAssertEqual(harness.manager.holdCount(node: first[0].node, token: first[0].token), 1)
            XCTAssertNotNil(harness.namespace.nodes[first[0].node])
            XCTAssertTrue(harness.manager.checkToken(path: "/locks/a", token: first[0].token))

            harness.release(first[0].node, session: 1, ticket: 5)
            effects = harness.takeEffects()
            XCTAssertEqual(effects.releasedTickets, [5])
            XCTAssertEqual(effects.grantedTickets, [3], "the last release passes the lock on")
            XCTAssertNil(harness.namespace.nodes[first[0].node])
        }
    }

    func testOwnersOfOneSessionQueueLikeTwoProcesses() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1, owner: "a")
            harness.acquire(2, session: 1, owner: "b")
            let effects = harness.takeEffects()
            XCTAssertEqual(effects.grantedTickets, [1], "\(delivery)")
            XCTAssertTrue(effects.failures.isEmpty)
            harness.release(effects.grants[0].node, session: 1, ticket: 3)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [2])
        }
    }

    func testWithoutAnOwnerASecondExclusiveAcquireOfOnesOwnLockFailsAtOnce() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1)
            harness.acquire(2, session: 1)
            harness.acquire(3, session: 1, kind: .shared)
            let effects = harness.takeEffects()
            XCTAssertEqual(effects.grantedTickets, [1], "\(delivery)")
            XCTAssertEqual(effects.failures, [2: .lockHeldBySession, 3: .lockHeldBySession])
            XCTAssertEqual(harness.waiterNodes().count, 1, "no node for the refused acquires")

            // Two shared acquires still stack, as in version 1; a writer after them is refused.
            harness.acquire(4, session: 2, path: "/locks/r", kind: .shared)
            harness.acquire(5, session: 2, path: "/locks/r", kind: .shared)
            harness.acquire(6, session: 2, path: "/locks/r", kind: .exclusive)
            let shared = harness.takeEffects()
            XCTAssertEqual(shared.grantedTickets, [4, 5])
            XCTAssertEqual(shared.failures, [6: .lockHeldBySession])
        }
    }

    func testAnOwnerWhoseAcquireStillWaitsOrWhoAsksAnotherKindIsRefused() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 2)
            harness.acquire(2, session: 1, owner: "t")
            harness.acquire(3, session: 1, owner: "t")
            var effects = harness.takeEffects()
            XCTAssertEqual(effects.failures, [3: .lockHeldBySession], "\(delivery)")
            harness.release(effects.grants[0].node, session: 2, ticket: 4)
            effects = harness.takeEffects()
            XCTAssertEqual(effects.grantedTickets, [2])
            harness.acquire(5, session: 1, kind: .shared, owner: "t")
            XCTAssertEqual(harness.takeEffects().failures, [5: .lockKindMismatch])
            harness.acquire(6, session: 1, owner: "x".padding(toLength: 65, withPad: "x", startingAt: 0))
            XCTAssertEqual(harness.takeEffects().failures, [6: .invalidArgument])
        }
    }

    func testAReentrantHoldEndsWhole() {
        let harness = LockHarness(.immediate)
        harness.acquire(1, session: 1, leaseMilliseconds: 100, owner: "t")
        harness.acquire(2, session: 1, owner: "t")
        let node = harness.takeEffects().grants[0].node
        harness.acquire(3, session: 2)
        harness.advance(100)
        let effects = harness.takeEffects()
        XCTAssertEqual(effects.losses.map(\.node), [node])
        XCTAssertEqual(effects.grantedTickets, [3], "the lease ends the hold whatever its count")
    }

    // MARK: Lease renewal

    func testRenewalMovesTheLeaseAndAHolderThatStopsLosesTheHoldAtTheLastDeadline() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1, leaseMilliseconds: 100)
            let grant = harness.takeEffects().grants[0]
            harness.acquire(2, session: 2)
            harness.advance(60)
            XCTAssertNil(harness.manager.renew(node: grant.node, token: grant.token, session: 1, leaseMilliseconds: 100, now: harness.now))
            harness.advance(60) // 120 ms after the grant: past the first lease, not the renewed one
            var effects = harness.takeEffects()
            XCTAssertTrue(effects.losses.isEmpty, "\(delivery): the renewal kept the hold")
            XCTAssertTrue(effects.grants.isEmpty)
            XCTAssertTrue(harness.manager.checkToken(path: "/locks/a", token: grant.token))
            harness.advance(39)
            XCTAssertTrue(harness.takeEffects().losses.isEmpty)
            harness.advance(1) // 100 ms after the renewal
            effects = harness.takeEffects()
            XCTAssertEqual(effects.losses.map(\.reason), [.leaseExpired])
            XCTAssertEqual(effects.grantedTickets, [2])
            XCTAssertEqual(harness.manager.renew(node: grant.node, token: grant.token, session: 1, leaseMilliseconds: 100,
                                                 now: harness.now)?.code, .notHolder, "the hold is gone")
        }
    }

    func testRenewalRefusals() {
        let harness = LockHarness(.immediate)
        harness.acquire(1, session: 1)
        harness.acquire(2, session: 2, path: "/locks/b", leaseMilliseconds: 1_000)
        let grants = harness.takeEffects().grants
        harness.acquire(3, session: 3, path: "/locks/b")
        let waiting = harness.manager.inspect(path: "/locks/b", now: harness.now).first { $0.position == .waiter }!
        let manager = harness.manager
        XCTAssertEqual(manager.renew(node: grants[0].node, token: grants[0].token, session: 1, leaseMilliseconds: 10,
                                     now: harness.now)?.code, .noLease)
        XCTAssertEqual(manager.renew(node: grants[1].node, token: grants[1].token, session: 1, leaseMilliseconds: 10,
                                     now: harness.now)?.code, .notHolder, "another session's hold")
        XCTAssertEqual(manager.renew(node: grants[1].node, token: grants[1].token + 1, session: 2, leaseMilliseconds: 10,
                                     now: harness.now)?.code, .lockLost, "another token")
        XCTAssertEqual(manager.renew(node: grants[1].node, token: grants[1].token, session: 2, leaseMilliseconds: 0,
                                     now: harness.now)?.code, .invalidArgument)
        XCTAssertEqual(manager.renew(node: waiting.node, token: waiting.token, session: 3, leaseMilliseconds: 10,
                                     now: harness.now)?.code, .notHolder, "a waiter has no lease yet")
        // A shorter renewal shortens the lease.
        XCTAssertNil(manager.renew(node: grants[1].node, token: grants[1].token, session: 2, leaseMilliseconds: 10, now: harness.now))
        harness.advance(10)
        XCTAssertEqual(harness.takeEffects().grantedTickets, [3])
    }

    // MARK: Revocation requests

    func testOnlyRevocableHoldsAreListedForRevocation() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1, kind: .shared, owner: "a") // not revocable
            harness.acquire(2, session: 2, kind: .shared, owner: "b", revocable: true)
            harness.acquire(3, session: 3, kind: .exclusive, owner: "c", revocable: true) // waits: not asked
            let effects = harness.takeEffects()
            XCTAssertEqual(effects.grantedTickets, [1, 2], "\(delivery)")
            let holds = harness.manager.revocableHolds(path: "/locks/a")
            XCTAssertEqual(holds.map(\.session), [2], "holders only, revocable only")
            XCTAssertEqual(holds.first?.token, effects.grants[1].token)
            XCTAssertTrue(harness.manager.revocableHolds(path: "/locks/none").isEmpty)
        }
    }

    // MARK: Deadlock detection

    func testTwoSessionsTakingTwoLocksInOppositeOrderGetADeadlockAtOnce() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 0xA, path: "/locks/one")
            harness.acquire(2, session: 0xB, path: "/locks/two")
            harness.acquire(3, session: 0xA, path: "/locks/two")
            harness.acquire(4, session: 0xB, path: "/locks/one")
            let effects = harness.takeEffects()
            XCTAssertEqual(effects.grantedTickets, [1, 2], "\(delivery)")
            XCTAssertEqual(effects.failures, [4: .deadlock], "only the acquire that closes the cycle")
            let message = effects.failure(4)?.message ?? ""
            XCTAssertTrue(message.contains("/locks/one") && message.contains("/locks/two")
                          && message.contains("session 0xa") && message.contains("session 0xb"), message)
            XCTAssertEqual(harness.waiterNodes("/locks/one").count, 1, "the refused waiter's node is gone")
            // B gives up its hold: A proceeds.
            harness.release(effects.grants[1].node, session: 0xB, ticket: 5)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [3])
        }
    }

    /// The hold that closes the cycle was the last acquire of a lock without members (whose session
    /// entry the manager defers, `LockManager.sessionDeferred`), taken by a session that was already
    /// waiting: the deadlock check still sees it among that session's nodes.
    func testAHoldTakenOnAnIdleLockWhileWaitingElsewhereClosesACycle() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(10, session: 0xC, path: "/locks/c") // C's entry deferred
            harness.acquire(1, session: 0xA, path: "/locks/p")
            harness.acquire(2, session: 0xB, path: "/locks/p") // B waits for A
            let node = harness.takeEffects().grants.first { $0.ticket == 10 }!.node
            harness.release(node, session: 0xC, ticket: 11)    // no entry deferred now
            harness.acquire(3, session: 0xB, path: "/locks/m") // B holds m (an idle lock): its entry deferred
            harness.acquire(4, session: 0xA, path: "/locks/m") // A would wait for B: a cycle
            let effects = harness.takeEffects()
            XCTAssertEqual(effects.grantedTickets, [3], "\(delivery)")
            XCTAssertEqual(effects.failures, [4: .deadlock], "\(delivery)")
            // The session's end still finds the hold on m: its node goes, and nobody waits behind it.
            harness.sessionDies(0xB)
            let ended = harness.takeEffects()
            XCTAssertEqual(ended.losses.map(\.reason), [.sessionExpired], "\(delivery)")
            XCTAssertEqual(ended.failures, [2: .sessionExpired], "\(delivery)")
            XCTAssertEqual(harness.waiterNodes("/locks/m").count, 0, "\(delivery)")
            XCTAssertEqual(harness.manager.waiterCount, 1, "only A's hold of p is left")
        }
    }

    func testACycleOfThreeThroughAWaitingWriterIsFound() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1, path: "/locks/one", kind: .shared)
            harness.acquire(2, session: 3, path: "/locks/one", kind: .exclusive) // waits behind reader 1
            harness.acquire(3, session: 2, path: "/locks/two")
            harness.acquire(4, session: 1, path: "/locks/two")                   // 1 waits for 2
            // 2 asks a shared hold of /locks/one: behind the waiting writer (3), which waits for 1.
            harness.acquire(5, session: 2, path: "/locks/one", kind: .shared)
            let effects = harness.takeEffects()
            XCTAssertEqual(effects.grantedTickets, [1, 3], "\(delivery)")
            XCTAssertEqual(effects.failures, [5: .deadlock])
        }
    }

    func testNoDeadlockWithoutACycle() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            // A chain: 1 holds one; 2 waits for one; 3 holds two; 1 waits for two. No cycle.
            harness.acquire(1, session: 1, path: "/locks/one")
            harness.acquire(2, session: 2, path: "/locks/one")
            harness.acquire(3, session: 3, path: "/locks/two")
            harness.acquire(4, session: 1, path: "/locks/two")
            // Readers crossing: shared holds do not block each other.
            harness.acquire(5, session: 4, path: "/locks/r1", kind: .shared)
            harness.acquire(6, session: 5, path: "/locks/r2", kind: .shared)
            harness.acquire(7, session: 4, path: "/locks/r2", kind: .shared)
            harness.acquire(8, session: 5, path: "/locks/r1", kind: .shared)
            // Semaphores are outside the graph.
            harness.acquire(9, session: 6, path: "/locks/s1", kind: .semaphore, permits: 1)
            harness.acquire(10, session: 7, path: "/locks/s2", kind: .semaphore, permits: 1)
            harness.acquire(11, session: 6, path: "/locks/s2", kind: .semaphore, permits: 1)
            harness.acquire(12, session: 7, path: "/locks/s1", kind: .semaphore, permits: 1)
            let effects = harness.takeEffects()
            XCTAssertTrue(effects.failures.isEmpty, "\(delivery): \(effects.failures)")
            XCTAssertEqual(Set(effects.grantedTickets), [1, 3, 5, 6, 7, 8, 9, 10])
        }
    }

    func testOwnersOfOneSessionCrossingLocksDeadlock() {
        let harness = LockHarness(.immediate)
        harness.acquire(1, session: 1, path: "/locks/one", owner: "a")
        harness.acquire(2, session: 1, path: "/locks/two", owner: "b")
        harness.acquire(3, session: 1, path: "/locks/two", owner: "a")
        harness.acquire(4, session: 1, path: "/locks/one", owner: "b")
        let effects = harness.takeEffects()
        XCTAssertEqual(effects.grantedTickets, [1, 2])
        XCTAssertEqual(effects.failures, [4: .deadlock])
        XCTAssertTrue(effects.failure(4)?.message.contains("owner a") == true)
    }

    func testADeadlockCheckOnAHotLockScansEachQueueOnce() {
        // One holder with many waiters behind it acquires elsewhere: the backward search meets every
        // waiter of the hot lock once (each one's own node is last of its session), and finds no cycle.
        let harness = LockHarness(.immediate)
        harness.acquire(0, session: 1, path: "/locks/hot")
        for index in 1...2_000 { harness.acquire(index, session: UInt64(index + 1), path: "/locks/hot", settle: false) }
        harness.acquire(5_000, session: 9_999, path: "/locks/cold")
        harness.acquire(5_001, session: 1, path: "/locks/cold")
        let effects = harness.takeEffects()
        XCTAssertTrue(effects.failures.isEmpty)
        // Now the cold lock's holder asks for the hot lock: a cycle through 1.
        harness.acquire(5_002, session: 9_999, path: "/locks/hot")
        XCTAssertEqual(harness.takeEffects().failures, [5_002: .deadlock])
    }
}

/// Lock-delay (PROTOCOL.md §12.12).
final class LockDelayTests: XCTestCase {
    func testADeadHoldersLockIsGrantedToNobodyUntilTheDelayEnds() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1, owner: "o", lockDelayMilliseconds: 500)
            harness.acquire(2, session: 2)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [1], "\(delivery)")
            harness.sessionDies(1)
            var effects = harness.takeEffects()
            XCTAssertEqual(effects.losses.map(\.reason), [.sessionExpired])
            XCTAssertTrue(effects.grants.isEmpty, "\(delivery): granted inside the delay")
            harness.acquire(3, session: 3, waitMilliseconds: 0)
            XCTAssertEqual(harness.takeEffects().failures, [3: .lockBusy], "a try is busy during the delay")
            harness.advance(499)
            XCTAssertTrue(harness.takeEffects().grants.isEmpty)
            XCTAssertEqual(harness.manager.inspect(path: "/locks/a", now: harness.now).map(\.position), [.waiter])
            harness.advance(1)
            effects = harness.takeEffects()
            XCTAssertEqual(effects.grantedTickets, [2], "\(delivery): granted when the delay ends")
        }
    }

    func testACleanReleaseOrALeaseStartsNoDelay() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1, owner: "o", lockDelayMilliseconds: 10_000)
            harness.acquire(2, session: 2, path: "/locks/b", leaseMilliseconds: 100, owner: "o", lockDelayMilliseconds: 10_000)
            let grants = harness.takeEffects().grants
            harness.acquire(3, session: 3)
            harness.acquire(4, session: 4, path: "/locks/b")
            harness.release(grants[0].node, session: 1, ticket: 5)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [3], "\(delivery): a release passes the lock on at once")
            harness.advance(100)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [4], "\(delivery): so does a lease")
        }
    }

    func testWithoutADelayTheNextWaiterIsGrantedAtOnceAndTheDelayIsBounded() {
        let harness = LockHarness(.immediate, configuration: {
            var configuration = LockManagerConfiguration()
            configuration.lockDelayMillisecondsMax = 1_000
            return configuration
        }())
        harness.acquire(1, session: 1)
        harness.acquire(2, session: 2)
        harness.sessionDies(1)
        XCTAssertEqual(harness.takeEffects().grantedTickets, [1, 2])
        harness.acquire(3, session: 3, path: "/locks/c", owner: "o", lockDelayMilliseconds: 1_001)
        XCTAssertEqual(harness.takeEffects().failures, [3: .invalidArgument])
    }
}

/// A waiting acquire's ticket stays in the manager's table after its grant (a stale entry, dropped in
/// bulk later): cancelling it then changes nothing, and the ticket may name a new acquire; many grants
/// leave the table bounded and every later cancel of a pending acquire still works.
final class LockTicketTableTests: XCTestCase {
    func testAGrantedWaitersTicketCancelsNothingAndMayBeUsedAgain() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1)
            harness.acquire(2, session: 2) // waits: its ticket entered
            harness.acquire(3, session: 3) // waits
            let first = harness.takeEffects().grants
            XCTAssertEqual(first.map(\.ticket), [1], "\(delivery)")
            harness.release(first[0].node, session: 1, ticket: 10)
            let second = harness.takeEffects().grants
            XCTAssertEqual(second.map(\.ticket), [2], "\(delivery)")
            XCTAssertFalse(harness.cancel(2), "a granted acquire cannot be cancelled (\(delivery))")
            XCTAssertEqual(harness.takeEffects().releasedTickets, [])
            XCTAssertEqual(harness.manager.inspect(path: "/locks/a", now: harness.now).map(\.position), [.holder, .waiter],
                           "the hold stays (\(delivery))")
            // Ticket 2 again, on another lock: a new acquire, not a duplicate of the answered one.
            harness.acquire(2, session: 2, path: "/locks/b")
            XCTAssertEqual(harness.takeEffects().grantedTickets, [2], "\(delivery)")
            XCTAssertTrue(harness.cancel(3), "a waiting acquire is still found (\(delivery))")
        }
    }

    func testManyGrantsThroughAQueueKeepCancelsRight() {
        let harness = LockHarness(.immediate)
        harness.acquire(0, session: 1_000_000)
        var holder = (ticket: 0, session: UInt64(1_000_000), node: harness.takeEffects().grants[0].node)
        // Acquires queue up and every fourth one the holder passes the lock on: each grant leaves its
        // entry stale, thousands of them over the run.
        for ticket in 1...2_000 {
            harness.acquire(ticket, session: UInt64(ticket + 1), settle: false)
            if ticket % 4 == 0 {
                harness.release(holder.node, session: holder.session, ticket: 100_000 + ticket)
                let granted = harness.takeEffects().grants
                XCTAssertEqual(granted.count, 1)
                holder = (granted[0].ticket, UInt64(granted[0].ticket + 1), granted[0].node)
            }
        }
        XCTAssertEqual(holder.ticket, 500)
        // Each acquire still waiting is cancelled by its ticket, and only those.
        var cancelled: [Int] = []
        for ticket in 1...2_000 where harness.cancel(ticket) { cancelled.append(ticket) }
        XCTAssertEqual(cancelled, Array(501...2_000))
        XCTAssertEqual(harness.manager.heldTicketCount, 0)
        XCTAssertEqual(harness.manager.inspect(path: "/locks/a", now: harness.now).map(\.position), [.holder])
    }
}
