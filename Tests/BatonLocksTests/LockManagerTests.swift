import BatonLocks
import BatonProtocol
import XCTest

final class LockManagerTests: XCTestCase {
    func testWaiterNamesRoundTripAndOrderBySequence() {
        let name = WaiterName(kind: .shared, session: 0xA1, sequence: 41)
        XCTAssertEqual(name.name, "r-00000000000000a1-0000000041")
        XCTAssertEqual(WaiterName(parsing: name.name), name)
        XCTAssertEqual(WaiterName(lastComponentOf: "/locks/a/" + name.name), name)
        XCTAssertEqual(WaiterName(lastComponentOf: name.name), name)
        XCTAssertNil(WaiterName(lastComponentOf: "/locks/a/" + name.name + "/b"))
        XCTAssertNil(WaiterName(lastComponentOf: "/" + name.name + "0"))
        // The name must follow a slash (or be the whole path): read from the end, not scanned for.
        XCTAssertNil(WaiterName(lastComponentOf: "/locks/a" + name.name))
        XCTAssertNil(WaiterName(lastComponentOf: String(name.name.dropFirst())))
        XCTAssertEqual(WaiterName(lastComponentOf: "/" + name.name), name)
        XCTAssertEqual(WaiterName.createPath(lockPath: "/locks/a", kind: .shared, session: 0xA1), "/locks/a/r-00000000000000a1-")
        XCTAssertEqual(WaiterName.createPath(lockPath: "/a-long-lock-path/beyond-fifteen-bytes", kind: .exclusive, session: 1),
                       "/a-long-lock-path/beyond-fifteen-bytes/x-0000000000000001-")
        XCTAssertNil(WaiterName(parsing: "q-00000000000000a1-0000000041"))
        XCTAssertNil(WaiterName(parsing: "x-00000000000000a1-000000004"))
        XCTAssertNil(WaiterName(parsing: "x-00000000000000A1-0000000041"))
        XCTAssertEqual(WaiterName.permits(fromData: WaiterName.permitData(70_000)), 70_000)
        XCTAssertNil(WaiterName.permits(fromData: [1, 2]))
    }

    func testGrantsFollowQueueOrderFor100Waiters() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            for index in 0..<100 { harness.acquire(index, session: UInt64(index + 1)) }
            var grants = harness.takeEffects().grants
            XCTAssertEqual(grants.map(\.ticket), [0], "\(delivery)")
            for index in 0..<100 {
                harness.release(grants[0].node, session: UInt64(index + 1), ticket: 1_000 + index)
                let effects = harness.takeEffects()
                XCTAssertEqual(effects.releasedTickets, [1_000 + index])
                grants = effects.grants
                XCTAssertEqual(grants.map(\.ticket), index < 99 ? [index + 1] : [], "\(delivery) after release \(index)")
            }
            XCTAssertEqual(harness.waiterNodes(), [])
            XCTAssertEqual(harness.manager.waiterCount, 0)
            XCTAssertNil(harness.namespace.nodes["/locks/a"], "the container goes with its last waiter")
        }
    }

    func testReadersShareAndAWriterWaitsForEarlierReadersAndBlocksLaterOnes() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1, kind: .shared)
            harness.acquire(2, session: 2, kind: .shared)
            harness.acquire(3, session: 3, kind: .exclusive)
            harness.acquire(4, session: 4, kind: .shared)
            let first = harness.takeEffects().grants
            XCTAssertEqual(first.map(\.ticket), [1, 2], "\(delivery): readers share")
            harness.release(first[1].node, session: 2, ticket: 20)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [], "the writer waits for every earlier reader")
            harness.release(first[0].node, session: 1, ticket: 10)
            let writer = harness.takeEffects().grants
            XCTAssertEqual(writer.map(\.ticket), [3])
            XCTAssertEqual(harness.manager.inspect(path: "/locks/a", now: harness.now).map(\.position), [.holder, .waiter])
            harness.release(writer[0].node, session: 3, ticket: 30)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [4], "the later reader waited for the writer")
        }
    }

    func testExclusiveAndSharedMixWithoutOverlap() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1, kind: .exclusive)
            harness.acquire(2, session: 2, kind: .shared)
            harness.acquire(3, session: 3, kind: .shared)
            let holder = harness.takeEffects().grants
            XCTAssertEqual(holder.map(\.ticket), [1])
            harness.release(holder[0].node, session: 1, ticket: 10)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [2, 3], "\(delivery): the run of readers wakes together")
        }
    }

    func testSemaphoreHoldsNAndEachReleaseGrantsExactlyOne() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            for index in 1...6 { harness.acquire(index, session: UInt64(index), kind: .semaphore, permits: 3) }
            let holders = harness.takeEffects().grants
            XCTAssertEqual(holders.map(\.ticket), [1, 2, 3], "\(delivery)")
            harness.release(holders[1].node, session: 2, ticket: 20)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [4], "a middle holder's release grants one")
            harness.release(holders[2].node, session: 3, ticket: 30)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [5])
            harness.release(holders[0].node, session: 1, ticket: 10)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [6])
            let entries = harness.manager.inspect(path: "/locks/a", now: harness.now)
            XCTAssertEqual(entries.map(\.position), [.holder, .holder, .holder])
        }
    }

    func testSemaphoreRefusesOtherPermitsAndOtherKinds() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1, kind: .semaphore, permits: 2)
            harness.acquire(2, session: 2, kind: .semaphore, permits: 3)
            harness.acquire(3, session: 3, kind: .exclusive)
            harness.acquire(4, session: 4, path: "/locks/b", kind: .shared)
            harness.acquire(5, session: 5, path: "/locks/b", kind: .semaphore, permits: 2)
            let effects = harness.takeEffects()
            XCTAssertEqual(effects.grantedTickets, [1, 4], "\(delivery)")
            XCTAssertEqual(effects.failures, [2: .lockKindMismatch, 3: .lockKindMismatch, 5: .lockKindMismatch])
            XCTAssertEqual(harness.waiterNodes().count, 1, "refused waiters leave no node")
            XCTAssertEqual(harness.waiterNodes("/locks/b").count, 1)
        }
    }

    func testSemaphorePermitsOfANodeFromAnotherSidecarAreReadFromItsData() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.namespace.createNow("/locks", mode: .container, owner: 0)
            harness.namespace.createNow("/locks/a", mode: .container, owner: 0)
            // A waiter created by another sidecar: the manager does not know it.
            harness.namespace.createNow(WaiterName.createPath(lockPath: "/locks/a", kind: .semaphore, session: 77),
                                        data: WaiterName.permitData(2), mode: .ephemeralSequential, owner: 77)
            harness.acquire(1, session: 1, kind: .semaphore, permits: 5)
            harness.acquire(2, session: 2, kind: .semaphore, permits: 2)
            let effects = harness.takeEffects()
            XCTAssertEqual(effects.failures, [1: .lockKindMismatch], "\(delivery)")
            XCTAssertEqual(effects.grantedTickets, [2])
        }
    }

    func testTryFailsAtOnceWhenHeldAndLeavesNoNode() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1)
            harness.acquire(2, session: 2, waitMilliseconds: 0)
            let effects = harness.takeEffects()
            XCTAssertEqual(effects.grantedTickets, [1], "\(delivery)")
            XCTAssertEqual(effects.failures, [2: .lockBusy])
            XCTAssertEqual(harness.waiterNodes().count, 1)
            harness.acquire(3, session: 3, path: "/locks/free", waitMilliseconds: 0)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [3], "try succeeds when free")
        }
    }

    func testTimeoutsAndCancelsMidQueueCloseTheGap() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1)
            harness.acquire(2, session: 2)
            harness.acquire(3, session: 3, waitMilliseconds: 500)
            harness.acquire(4, session: 4)
            harness.acquire(5, session: 5, waitMilliseconds: 800)
            harness.acquire(6, session: 6)
            let holder = harness.takeEffects().grants
            XCTAssertEqual(holder.map(\.ticket), [1])
            XCTAssertTrue(harness.cancel(4))
            XCTAssertFalse(harness.cancel(1), "a granted acquire cannot be cancelled")
            harness.advance(500)
            XCTAssertEqual(harness.manager.nextDeadlineMilliseconds, harness.nowMilliseconds + 300)
            var effects = harness.takeEffects()
            XCTAssertEqual(effects.failures, [4: .lockCancelled, 3: .lockTimeout], "\(delivery)")
            XCTAssertEqual(harness.waiterNodes().count, 4)
            let watchesBefore = harness.namespace.watchNotifications
            harness.release(holder[0].node, session: 1, ticket: 10)
            let second = harness.takeEffects().grants
            XCTAssertEqual(second.map(\.ticket), [2])
            XCTAssertEqual(harness.namespace.watchNotifications - watchesBefore, 1)
            harness.advance(300)
            XCTAssertEqual(harness.takeEffects().failures, [5: .lockTimeout])
            harness.release(second[0].node, session: 2, ticket: 20)
            effects = harness.takeEffects()
            XCTAssertEqual(effects.grantedTickets, [6], "nobody skipped, nobody granted twice")
            XCTAssertEqual(harness.manager.inspect(path: "/locks/a", now: harness.now).count, 1)
        }
    }

    func testSessionEndingWhileWaitingAndWhileHolding() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1)
            harness.acquire(2, session: 2)
            harness.acquire(3, session: 3)
            let holder = harness.takeEffects().grants[0]
            harness.endSession(2)
            var effects = harness.takeEffects()
            XCTAssertEqual(effects.failures, [2: .sessionExpired], "\(delivery)")
            XCTAssertEqual(effects.grantedTickets, [])
            harness.endSession(1)
            effects = harness.takeEffects()
            XCTAssertEqual(effects.grantedTickets, [3], "the lock passes on at once")
            XCTAssertEqual(effects.losses.map(\.node), [holder.node])
            XCTAssertEqual(effects.losses.map(\.reason), [.sessionExpired])
            XCTAssertEqual(harness.manager.waiterCount, 1)
        }
    }

    /// A session's waiter table goes from one waiter to several and back (`SessionWaiters`): the
    /// session's end still finds every hold it has left, and only those.
    func testSessionEndingAfterItsHoldsGrewAndShrankEndsExactlyTheRest() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            for (ticket, path) in [(1, "/locks/a"), (2, "/locks/b"), (3, "/locks/c")] {
                harness.acquire(ticket, session: 1, path: path)
            }
            let grants = harness.takeEffects().grants
            XCTAssertEqual(grants.count, 3, "\(delivery)")
            let byPath = Dictionary(uniqueKeysWithValues: grants.map { (String($0.node.prefix(8)), $0.node) })
            harness.release(byPath["/locks/a"]!, session: 1, ticket: 10)
            harness.release(byPath["/locks/b"]!, session: 1, ticket: 11)
            _ = harness.takeEffects()
            XCTAssertEqual(harness.manager.waiterCount, 1, "\(delivery)")
            harness.acquire(4, session: 1, path: "/locks/d")
            let later = harness.takeEffects().grants
            XCTAssertEqual(later.count, 1)
            // The manager alone is told (its nodes not deleted yet): it must find both holds itself.
            harness.sessions.alive.remove(1)
            harness.apply(.sessionEnded(1))
            let effects = harness.takeEffects()
            XCTAssertEqual(Set(effects.losses.map(\.node)), Set([byPath["/locks/c"]!, later.first?.node ?? "?"]), "\(delivery)")
            XCTAssertEqual(effects.losses.map(\.reason), [.sessionExpired, .sessionExpired])
            XCTAssertEqual(harness.manager.waiterCount, 0)
        }
    }

    func testGrantIsRefusedWhenTheSessionDiedBeforeItsTurn() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1)
            harness.acquire(2, session: 2)
            harness.acquire(3, session: 3)
            let holder = harness.takeEffects().grants[0]
            harness.sessions.alive.remove(2) // expired, but the store has not removed its node yet
            harness.release(holder.node, session: 1, ticket: 10)
            var effects = harness.takeEffects()
            XCTAssertEqual(effects.failures, [2: .sessionExpired], "\(delivery)")
            XCTAssertEqual(effects.grantedTickets, [3])
            harness.endSession(2)
            effects = harness.takeEffects()
            XCTAssertEqual(effects.count, 0)
        }
    }

    func testLeaseExpiryEndsTheHoldAndGrantsTheNext() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1, leaseMilliseconds: 1_000)
            harness.acquire(2, session: 2)
            let holder = harness.takeEffects().grants[0]
            harness.advance(999)
            XCTAssertEqual(harness.takeEffects().count, 0)
            harness.advance(1)
            let effects = harness.takeEffects()
            XCTAssertEqual(effects.losses.map(\.node), [holder.node], "\(delivery)")
            XCTAssertEqual(effects.losses.map(\.reason), [.leaseExpired])
            XCTAssertEqual(effects.grantedTickets, [2])
            XCTAssertFalse(harness.manager.checkToken(path: "/locks/a", token: holder.token))
            harness.release(holder.node, session: 1, ticket: 10)
            XCTAssertEqual(harness.takeEffects().failures, [10: .notHolder])
        }
    }

    func testNodeDeletedBySomeoneElseIsALostHold() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1)
            harness.acquire(2, session: 2)
            harness.acquire(3, session: 3, path: "/locks/s", kind: .semaphore, permits: 2)
            let holders = harness.takeEffects().grants
            XCTAssertEqual(holders.map(\.ticket), [1, 3])
            harness.namespace.deleteNow(holders[0].node)
            harness.namespace.deleteNow(holders[1].node)
            harness.settle()
            let effects = harness.takeEffects()
            XCTAssertEqual(Set(effects.losses.map(\.node)), Set(holders.map(\.node)), "\(delivery)")
            XCTAssertEqual(Set(effects.losses.map(\.reason)), [.nodeDeleted])
            XCTAssertEqual(effects.grantedTickets, [2])
        }
    }

    /// Over a namespace that reports deletions (the embedded one) the manager watches none of its own
    /// nodes: an uncontended acquire and release set no watch at all, a queue watches only the nodes
    /// waited behind, and a deletion the owner reports (`nodeDeleted`) is what the watch would have
    /// said: the holder's hold is lost, a waiter's acquire fails, the next waiter is granted.
    func testOverANamespaceThatReportsDeletionsOwnNodesAreNotWatched() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery, reportsDeletions: true)
            for round in 0..<3 {
                harness.acquire(round, session: 1)
                let grant = harness.takeEffects().grants
                XCTAssertEqual(grant.map(\.ticket), [round])
                harness.release(grant[0].node, session: 1, ticket: 100 + round)
                XCTAssertEqual(harness.takeEffects().releasedTickets, [100 + round])
            }
            XCTAssertEqual(harness.namespace.existsWatchesSet, 0, "\(delivery): an uncontended pair watches nothing")

            harness.acquire(1, session: 1)
            harness.acquire(2, session: 2)
            harness.acquire(3, session: 3)
            let holder = harness.takeEffects().grants
            XCTAssertEqual(holder.map(\.ticket), [1])
            // Not even the waiters' predecessors: they are the manager's own nodes too.
            XCTAssertEqual(harness.namespace.existsWatchesSet, 0, "\(delivery)")
            let waiting = harness.waiterNodes()
            XCTAssertEqual(waiting.count, 3)
            // Someone deletes the middle waiter's node and says so: its acquire fails, the last now waits behind the holder.
            let middle = "/locks/a/" + waiting[1]
            harness.namespace.deleteNow(middle)
            harness.apply(.nodeDeleted(path: middle))
            var effects = harness.takeEffects()
            XCTAssertEqual(effects.failure(2)?.code, .lockLost, "\(delivery)")
            XCTAssertEqual(effects.grantedTickets, [])
            // Then the holder's node: the holder hears lockLost(nodeDeleted) and the last waiter is granted.
            harness.namespace.deleteNow(holder[0].node)
            harness.apply(.nodeDeleted(path: holder[0].node))
            effects = harness.takeEffects()
            XCTAssertEqual(effects.losses.map(\.node), [holder[0].node], "\(delivery)")
            XCTAssertEqual(effects.losses.map(\.reason), [.nodeDeleted])
            XCTAssertEqual(effects.grantedTickets, [3])
            XCTAssertEqual(harness.manager.waiterCount, 1)
        }
    }

    /// A release that gives back its grant's handle (`LockHold`) finds the hold without looking it up,
    /// yet is judged exactly as one that names the node alone: another session's release, a wrong
    /// node or token is refused; a stale handle (its hold ended) neither releases the node's next hold
    /// wrongly nor stops that hold's release.
    func testAReleaseWithTheGrantsHandleIsJudgedAsOneByPath() {
        forEachDelivery { delivery in
            for reports in [true, false] {
                let harness = LockHarness(delivery, reportsDeletions: reports)
                func grant(_ effects: [LockEffect<Int>]) -> (node: String, token: UInt64, hold: LockHold)? {
                    for case .granted(_, let node, let token, let hold) in effects { return (node, token, hold) }
                    return nil
                }
                harness.acquire(1, session: 1)
                guard let first = grant(harness.takeEffects()) else { return XCTFail("\(delivery): no grant") }
                harness.sessions.alive.insert(2)
                harness.apply(.release(node: first.node, token: first.token, session: 2, ticket: 10, hold: first.hold))
                XCTAssertEqual(harness.takeEffects().failure(10)?.code, .notHolder, "\(delivery) \(reports): another session's")
                harness.apply(.release(node: first.node, token: first.token + 1, session: 1, ticket: 11, hold: first.hold))
                XCTAssertEqual(harness.takeEffects().failure(11)?.code, .lockLost, "\(delivery) \(reports): another token")
                harness.apply(.release(node: "/locks/a/x-0000000000000001-0000009999", token: first.token, session: 1,
                                       ticket: 12, hold: first.hold))
                XCTAssertEqual(harness.takeEffects().failure(12)?.code, .notHolder, "\(delivery) \(reports): another node")
                XCTAssertEqual(harness.waiterNodes().count, 1)
                harness.apply(.release(node: first.node, token: first.token, session: 1, ticket: 13, hold: first.hold))
                XCTAssertEqual(harness.takeEffects().releasedTickets, [13], "\(delivery) \(reports)")
                XCTAssertEqual(harness.waiterNodes().count, 0)

                harness.acquire(2, session: 1)
                guard let second = grant(harness.takeEffects()) else { return XCTFail("\(delivery): no second grant") }
                harness.apply(.release(node: first.node, token: first.token, session: 1, ticket: 14, hold: first.hold))
                XCTAssertNotNil(harness.takeEffects().failure(14), "\(delivery) \(reports): the ended hold stays ended")
                XCTAssertEqual(harness.waiterNodes().count, 1)
                harness.apply(.release(node: second.node, token: second.token, session: 1, ticket: 15, hold: first.hold))
                XCTAssertEqual(harness.takeEffects().releasedTickets, [15], "\(delivery) \(reports): a stale handle, found by path")
                XCTAssertEqual(harness.manager.waiterCount, 0)
                XCTAssertEqual(harness.manager.heldTicketCount, 0)
            }
        }
    }

    /// Over a namespace that reports deletions, a waiter behind a local node learns of its deletion
    /// from the manager itself (release, cancel, session end): no watch, no existence read, the next
    /// waiter granted in the same step, after the release's answer and never before the node is gone.
    func testOverANamespaceThatReportsDeletionsAHandOffNeedsNoWatchNorRead() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery, reportsDeletions: true)
            for ticket in 1...4 { harness.acquire(ticket, session: UInt64(ticket)) }
            var holder = harness.takeEffects().grants
            XCTAssertEqual(holder.map(\.ticket), [1])
            // Three wait, each behind a local node: interest kept on that waiter, no watch table entry.
            XCTAssertEqual(harness.manager.watchedNodeCount, 0, "\(delivery)")
            // A release: the next waiter is granted by the same input, after the release's answer.
            harness.apply(.release(node: holder[0].node, token: holder[0].token, session: 1, ticket: 101))
            var effects = harness.takeEffects()
            XCTAssertEqual(effects.releasedTickets, [101], "\(delivery)")
            XCTAssertEqual(effects.grantedTickets, [2], "\(delivery)")
            let releasedAt = effects.firstIndex { if case .released = $0 { return true } else { return false } }
            let grantedAt = effects.firstIndex { if case .granted = $0 { return true } else { return false } }
            if let releasedAt, let grantedAt { XCTAssertLessThan(releasedAt, grantedAt, "\(delivery)") }
            XCTAssertFalse(harness.namespace.nodes.keys.contains(holder[0].node))
            holder = effects.grants
            // A cancelled waiter in the middle: the one behind it now waits behind the holder, still granted in turn.
            XCTAssertTrue(harness.cancel(3))
            XCTAssertEqual(harness.takeEffects().grantedTickets, [])
            // The holder's session ends (the manager is told first, then its ephemerals go): the last waiter is granted.
            harness.sessionDies(2)
            effects = harness.takeEffects()
            XCTAssertEqual(effects.losses.map(\.node), [holder[0].node], "\(delivery)")
            XCTAssertEqual(effects.grantedTickets, [4], "\(delivery)")
            XCTAssertEqual(harness.namespace.existsWatchesSet, 0, "\(delivery)")
            XCTAssertEqual(harness.namespace.operationCounts[.exists, default: 0], 0, "\(delivery): a grant reads nothing")
            XCTAssertEqual(harness.namespace.watchNotifications, 0, "\(delivery)")
            XCTAssertEqual(harness.manager.waiterCount, 1)
            XCTAssertEqual(harness.manager.watchedNodeCount, 0, "\(delivery)")
        }
    }

    func testOneWatchNotificationPerReleaseWhateverTheQueueLength() {
        forEachDelivery { delivery in
            for (length, kind) in [(10, LockKind.exclusive), (1_000, .exclusive), (10, .semaphore), (1_000, .semaphore)] {
                let harness = LockHarness(delivery)
                for index in 0..<length { harness.acquire(index, session: UInt64(index + 1), kind: kind, permits: 2) }
                var holders = harness.takeEffects().grants
                for round in 0..<5 {
                    let before = harness.namespace.watchNotifications
                    let released = holders.removeFirst()
                    harness.release(released.node, session: UInt64(released.ticket + 1), ticket: 10_000 + round)
                    XCTAssertEqual(harness.namespace.watchNotifications - before, 1, "\(delivery) \(kind) \(length) waiters")
                    let granted = harness.takeEffects().grants
                    XCTAssertEqual(granted.count, 1)
                    holders += granted
                }
            }
        }
    }

    /// A release (and an acquire joining the queue) costs the same namespace operations with 10 or
    /// 1,000 waiters queued, and lists nothing: the manager keeps the queue.
    func testNamespaceOperationsPerReleaseDoNotGrowWithTheQueue() {
        forEachDelivery { delivery in
            var perLength: [Int: [MemoryLockNamespace.Operation: Int]] = [:]
            for length in [10, 1_000] {
                let harness = LockHarness(delivery)
                var sessionOfTicket: [Int: UInt64] = [:]
                for index in 0..<length {
                    sessionOfTicket[index] = UInt64(index + 1)
                    harness.acquire(index, session: UInt64(index + 1))
                }
                var holder = harness.takeEffects().grants[0]
                var total: [MemoryLockNamespace.Operation: Int] = [:]
                for round in 0..<20 {
                    let before = harness.namespace.operationCounts
                    let session = sessionOfTicket[holder.ticket]!
                    harness.release(holder.node, session: session, ticket: 100_000 + round)
                    // The released client queues again at the tail.
                    sessionOfTicket[200_000 + round] = session
                    harness.acquire(200_000 + round, session: session)
                    let effects = harness.takeEffects()
                    XCTAssertEqual(effects.releasedTickets, [100_000 + round])
                    XCTAssertEqual(effects.grants.count, 1, "\(delivery) \(length): one waiter woken per release")
                    holder = effects.grants[0]
                    for (operation, count) in harness.namespace.operationCounts {
                        total[operation, default: 0] += count - (before[operation] ?? 0)
                    }
                }
                XCTAssertEqual(total[.children] ?? 0, 0, "\(delivery) \(length): no listing per release or re-acquire")
                perLength[length] = total
            }
            XCTAssertEqual(perLength[10], perLength[1_000], "\(delivery): the same operations with 10 and 1,000 waiters")
        }
    }

    /// Uncontended acquire+release: after the first acquire, a pair is a create, one read of the node
    /// (the grant's re-check, which also sets the holder's watch on its node) and a delete; no listing
    /// (the lock's empty queue outlives its last waiter).
    func testUncontendedPairsListOnlyOnce() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            // Persistent lock node (the memory namespace drops an emptied container at once).
            harness.namespace.createNow("/locks", mode: .persistent, owner: 0)
            harness.namespace.createNow("/locks/a", mode: .persistent, owner: 0)
            for round in 0..<5 {
                harness.acquire(round, session: 1)
                let grants = harness.takeEffects().grants
                XCTAssertEqual(grants.map(\.ticket), [round], "\(delivery)")
                guard let grant = grants.first else { return }
                harness.release(grant.node, session: 1, ticket: 100 + round)
                XCTAssertEqual(harness.takeEffects().releasedTickets, [100 + round], "\(delivery)")
            }
            XCTAssertEqual(harness.namespace.operationCounts[.children], 1, "\(delivery): only the first acquire lists")
            XCTAssertEqual(harness.namespace.operationCounts[.create], 5, "\(delivery)")
            XCTAssertEqual(harness.namespace.operationCounts[.delete], 5, "\(delivery)")
            XCTAssertEqual(harness.namespace.operationCounts[.exists], 5, "\(delivery): one read per grant")
        }
    }

    /// A lock whose last waiter went keeps its state (trusted empty queue, tables) for the next
    /// acquire, which neither lists nor makes it again; at most `idleLocksMax` are kept; a lock whose
    /// queue is not trusted (a semaphore) keeps none.
    func testAnIdleLockKeepsItsStateBounded() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            // Persistent lock node (the memory namespace drops an emptied container at once).
            harness.namespace.createNow("/locks", mode: .persistent, owner: 0)
            harness.namespace.createNow("/locks/a", mode: .persistent, owner: 0)
            for round in 0..<3 {
                harness.acquire(round, session: 1)
                let grant = harness.takeEffects().grants
                XCTAssertEqual(grant.map(\.ticket), [round], "\(delivery)")
                XCTAssertEqual(harness.manager.idleLockCount, 0)
                harness.release(grant[0].node, session: 1, ticket: 100 + round)
                XCTAssertEqual(harness.takeEffects().releasedTickets, [100 + round])
                XCTAssertEqual(harness.manager.lockCount, 0, "\(delivery)")
                XCTAssertEqual(harness.manager.idleLockCount, 1, "\(delivery)")
            }
            XCTAssertEqual(harness.namespace.operationCounts[.children], 1, "\(delivery): only the first acquire lists")
            for index in 0..<4_200 {
                harness.acquire(1_000 + index, session: 2, path: "/locks/many/\(index)")
                guard let grant = harness.takeEffects().grants.first else { return XCTFail("\(delivery) \(index)") }
                harness.release(grant.node, session: 2, ticket: 10_000 + index)
                XCTAssertLessThanOrEqual(harness.manager.idleLockCount, 4_096)
            }
            XCTAssertGreaterThan(harness.manager.idleLockCount, 0)
            XCTAssertEqual(harness.manager.lockCount, 0)
        }
        // A semaphore is judged by listings, not by its queue: nothing to keep.
        let harness = LockHarness(.immediate)
        harness.acquire(1, session: 1, path: "/locks/s", kind: .semaphore, permits: 2)
        guard let grant = harness.takeEffects().grants.first else { return XCTFail() }
        harness.release(grant.node, session: 1, ticket: 2)
        XCTAssertEqual(harness.takeEffects().releasedTickets, [2])
        XCTAssertEqual(harness.manager.lockCount, 0)
        XCTAssertEqual(harness.manager.idleLockCount, 0)
    }

    /// Nodes deleted by someone else, with the manager's queue trusted (the lock node's identity
    /// known) and without (every judgement lists).
    func testWaiterNodesDeletedBySomeoneElseWithAndWithoutTheQueue() {
        forEachDelivery { delivery in
            for reportsParent in [true, false] {
                let context = "\(delivery), queue \(reportsParent)"
                let harness = LockHarness(delivery)
                harness.namespace.reportsParent = reportsParent
                for index in 0..<4 { harness.acquire(index, session: UInt64(index + 1)) }
                XCTAssertEqual(harness.takeEffects().grantedTickets, [0], context)
                let nodes = harness.waiterNodes()
                // The middle waiter's node goes: its watcher (the next waiter) sees it.
                harness.namespace.deleteNow("/locks/a/" + nodes[1])
                XCTAssertEqual(harness.takeEffects().failures, [1: .lockLost], context)
                // The last waiter's node goes: nobody watches it; the next waiter to queue behind it finds it gone.
                // (With the queue, at once; with listings only, when its own predecessor goes.)
                harness.namespace.deleteNow("/locks/a/" + nodes[3])
                harness.acquire(4, session: 5)
                var failures = harness.takeEffects().failures
                if reportsParent { XCTAssertEqual(failures, [3: .lockLost], context) }
                var expected = [2, 4]
                var holderNode = "/locks/a/" + nodes[0]
                var holderSession: UInt64 = 1
                while !expected.isEmpty {
                    harness.release(holderNode, session: holderSession, ticket: 100 + expected.count)
                    let effects = harness.takeEffects()
                    failures.merge(effects.failures) { first, _ in first }
                    let grants = effects.grants
                    XCTAssertEqual(grants.map(\.ticket), [expected.removeFirst()], context)
                    guard let grant = grants.first else { break }
                    holderNode = grant.node
                    holderSession = UInt64(grant.ticket + 1)
                }
                XCTAssertEqual(failures, [3: .lockLost], context)
                if !reportsParent {
                    XCTAssertGreaterThan(harness.namespace.operationCounts[.children] ?? 0, 4, "\(context): every acquire lists")
                }
                harness.release(holderNode, session: holderSession, ticket: 200)
                XCTAssertEqual(harness.waiterNodes(), [], context)
                XCTAssertEqual(harness.manager.waiterCount, 0, context)
            }
        }
    }

    func testTokensStrictlyIncreaseAndCheckTokenKnowsCurrentHolders() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            var tokens: [UInt64] = []
            // One session each: a session's second exclusive acquire without an owner is refused (§12.9).
            for index in 0..<20 { harness.acquire(index, session: 1 + UInt64(index)) }
            for index in 0..<20 {
                let grant = harness.takeEffects().grants
                XCTAssertEqual(grant.map(\.ticket), [index], "\(delivery)")
                tokens.append(grant[0].token)
                XCTAssertTrue(harness.manager.checkToken(path: "/locks/a", token: grant[0].token))
                harness.release(grant[0].node, session: 1 + UInt64(index), ticket: 100 + index)
                XCTAssertFalse(harness.manager.checkToken(path: "/locks/a", token: grant[0].token))
            }
            XCTAssertEqual(tokens, tokens.sorted())
            XCTAssertEqual(Set(tokens).count, tokens.count)
        }
    }

    func testInspectListsHoldersAndWaitersWithAges() {
        let harness = LockHarness(.immediate)
        harness.acquire(1, session: 0xA)
        harness.advance(250)
        harness.acquire(2, session: 0xB, kind: .exclusive)
        let token = harness.takeEffects().grants[0].token
        harness.advance(100)
        let entries = harness.manager.inspect(path: "/locks/a", now: harness.now)
        XCTAssertEqual(entries.map(\.sessionID), [0xA, 0xB])
        XCTAssertEqual(entries.map(\.position), [.holder, .waiter])
        XCTAssertEqual(entries.map(\.clientName), ["client-10", "client-11"])
        XCTAssertEqual(entries.map(\.ageMilliseconds), [350, 100])
        XCTAssertEqual(entries[0].token, token)
        XCTAssertEqual(entries[0].node, "/locks/a/" + WaiterName(kind: .exclusive, session: 0xA, sequence: 0).name)
        XCTAssertEqual(harness.manager.inspect(path: "/locks/none", now: harness.now), [])
    }

    func testReleaseOfAForeignOrUnknownNodeIsNotHolderAndReleaseOfAWaiterCancelsIt() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1)
            harness.acquire(2, session: 2)
            let holder = harness.takeEffects().grants[0]
            harness.release(holder.node, session: 2, ticket: 10)
            harness.release("/locks/a/x-0000000000000001-0000000099", session: 1, ticket: 11)
            harness.release("/nowhere", session: 1, ticket: 12)
            XCTAssertEqual(harness.takeEffects().failures, [10: .notHolder, 11: .notHolder, 12: .notHolder], "\(delivery)")
            let waiting = "/locks/a/" + harness.waiterNodes()[1]
            harness.release(waiting, session: 2, ticket: 13)
            let effects = harness.takeEffects()
            XCTAssertEqual(effects.failures, [2: .lockCancelled])
            XCTAssertEqual(effects.releasedTickets, [13])
            XCTAssertEqual(harness.waiterNodes().count, 1)
        }
    }

    /// Issue 8, item 1: node paths repeat once the lock node is swept and created again; the token
    /// tells the holds apart, so a replayed release of the first hold cannot end the second.
    func testAStaleReleaseOfARepeatedNodePathIsLockLostAndTheLaterHoldStays() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 7, path: "/reuse/L")
            let first = harness.takeEffects().grants[0]
            harness.release(first.node, session: 7, ticket: 10, token: first.token)
            XCTAssertEqual(harness.takeEffects().releasedTickets, [10])
            XCTAssertNil(harness.namespace.nodes["/reuse/L"], "\(delivery): the empty container went with its last child")
            harness.acquire(2, session: 7, path: "/reuse/L")
            let second = harness.takeEffects().grants[0]
            XCTAssertEqual(second.node, first.node, "\(delivery): the same path names the new hold")
            XCTAssertGreaterThan(second.token, first.token)

            harness.release(first.node, session: 7, ticket: 11, token: first.token)
            let effects = harness.takeEffects()
            XCTAssertEqual(effects.failures, [11: .lockLost], "\(delivery)")
            XCTAssertEqual(effects.releasedTickets, [])
            XCTAssertTrue(effects.losses.isEmpty)
            XCTAssertTrue(harness.manager.checkToken(path: "/reuse/L", token: second.token), "\(delivery): the second hold stays")
            XCTAssertEqual(harness.waiterNodes("/reuse/L"), [NodePath.name(of: second.node)])

            harness.release(second.node, session: 7, ticket: 12, token: second.token)
            XCTAssertEqual(harness.takeEffects().releasedTickets, [12])
        }
    }

    /// Issue 8, item 3: with nobody queued behind it, only the waiter's own watch sees its node go.
    func testAWaitingAcquireWhoseNodeIsDeletedIsAnsweredLockLostAtOnce() {
        forEachDelivery { delivery in
            for kind in [LockKind.exclusive, .shared] {
                let harness = LockHarness(delivery)
                harness.acquire(1, session: 1)
                harness.acquire(2, session: 2, kind: kind, waitMilliseconds: 60_000)
                let holder = harness.takeEffects().grants[0]
                let waiting = "/locks/a/" + harness.waiterNodes()[1]
                harness.namespace.deleteNow(waiting)
                let effects = harness.takeEffects()
                XCTAssertEqual(effects.failures, [2: .lockLost], "\(delivery) \(kind)")
                XCTAssertTrue(effects.losses.isEmpty)
                XCTAssertEqual(harness.manager.inspect(path: "/locks/a", now: harness.now).map(\.node), [holder.node])
                XCTAssertEqual(harness.manager.waiterCount, 1)
                harness.release(holder.node, session: 1, ticket: 10)
                XCTAssertEqual(harness.takeEffects().releasedTickets, [10])
                XCTAssertEqual(harness.manager.waiterCount, 0)
            }
        }
    }

    /// A node named like a waiter but not made by a sequential create (a process outside the sidecar,
    /// or a forgery in an old data directory) can share a waiter's sequence. It must never make the
    /// manager think its own node is gone: that answered `lockLost` and left the node behind, an
    /// invisible waiter blocking everyone. Namesakes are ordered by session.
    func testANodeSharingAWaitersSequenceNeitherHidesNorOrphansIt() {
        forEachDelivery { delivery in
            for (namesakeSession, granted) in [(UInt64(0), false), (UInt64.max, true)] {
                for kind in [LockKind.exclusive, .shared] {
                    let harness = LockHarness(delivery)
                    harness.namespace.createNow("/locks", mode: .persistent, owner: 0)
                    harness.namespace.createNow("/locks/a", mode: .persistent, owner: 0)
                    let namesake = WaiterName(kind: .exclusive, session: namesakeSession, sequence: 0).name
                    harness.namespace.createNow("/locks/a/" + namesake, mode: .persistent, owner: 0)
                    harness.acquire(1, session: 5, kind: kind)
                    let effects = harness.takeEffects()
                    let context = "\(delivery) \(kind) namesake session \(namesakeSession)"
                    XCTAssertEqual(effects.failures, [:], context)
                    XCTAssertEqual(effects.grantedTickets, granted ? [1] : [], context)
                    XCTAssertEqual(harness.waiterNodes().count, 2, context)
                    if granted {
                        harness.release(effects.grants[0].node, session: 5, ticket: 2)
                    } else {
                        XCTAssertTrue(harness.cancel(1))
                    }
                    harness.settle()
                    XCTAssertEqual(harness.waiterNodes(), [namesake], "\(context): our node is gone, not orphaned")
                    XCTAssertEqual(harness.manager.waiterCount, 0, context)
                }
            }
        }
    }

    func testWaiterNamesAreReservedAndNoLockPathPassesThroughOne() {
        XCTAssertTrue(WaiterName.isReserved(path: "/l/x-0000000000000001-0000000000", sequential: false))
        XCTAssertTrue(WaiterName.isReserved(path: "/l/s-00000000deadbeef-", sequential: true))
        XCTAssertTrue(WaiterName.isReserved(path: "r-0000000000000001-0000000009", sequential: false))
        XCTAssertFalse(WaiterName.isReserved(path: "/l/x-0000000000000001-0000000000", sequential: true))
        XCTAssertFalse(WaiterName.isReserved(path: "/l/x-0000000000000001-", sequential: false))
        XCTAssertFalse(WaiterName.isReserved(path: "/l/lock-", sequential: true))
        XCTAssertFalse(WaiterName.isReserved(path: "/x-0000000000000001-0000000000/l", sequential: false))
        XCTAssertFalse(WaiterName.isReserved(path: "/l/X-0000000000000001-0000000000", sequential: false))
        XCTAssertTrue(WaiterName.passesThroughReserved(path: "/x-0000000000000001-0000000000/l"))
        XCTAssertTrue(WaiterName.passesThroughReserved(path: "/l/s-0000000000000001-0000000000"))
        XCTAssertFalse(WaiterName.passesThroughReserved(path: "/l/x-0000000000000001-000000000/m"))
        XCTAssertFalse(WaiterName.passesThroughReserved(path: "/locks/orders"))
        let harness = LockHarness(.immediate)
        harness.acquire(1, session: 1, path: "/a/x-0000000000000001-0000000000")
        harness.acquire(2, session: 1, path: "/a/r-0000000000000001-0000000000/b")
        XCTAssertEqual(harness.takeEffects().failures, [1: .lockNodeReserved, 2: .lockNodeReserved])
        XCTAssertNil(harness.namespace.nodes["/a"])
    }

    func testBadRequestsGetNamedErrors() {
        var configuration = LockManagerConfiguration()
        configuration.waitersPerLockMax = 3
        let harness = LockHarness(.immediate, configuration: configuration)
        harness.acquire(1, session: 1, path: "locks")
        harness.acquire(2, session: 1, path: "/locks//a")
        harness.acquire(3, session: 1, path: "/")
        harness.acquire(4, session: 1, kind: .semaphore, permits: 0)
        harness.acquire(5, session: 1, path: "/" + String(repeating: "p", count: 1_000))
        for index in 6...9 { harness.acquire(index, session: UInt64(index)) }
        harness.acquire(7, session: 1, path: "/locks/other")
        let effects = harness.takeEffects()
        XCTAssertEqual(effects.failures, [1: .invalidPath, 2: .invalidPath, 3: .invalidPath, 4: .invalidArgument,
                                          5: .pathTooLong, 9: .tooManyWaiters, 7: .invalidArgument],
                       "a second acquire with a pending ticket is refused")
        XCTAssertEqual(effects.grantedTickets, [6])
        XCTAssertEqual(harness.manager.inspect(path: "/locks/a", now: harness.now).count, 3,
                       "the refused duplicate did not disturb the pending acquire")
    }

    func testLockNodeAndMissingAncestorsAreCreatedAsContainers() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1, path: "/app/locks/orders")
            XCTAssertEqual(harness.takeEffects().grantedTickets, [1], "\(delivery)")
            XCTAssertEqual(harness.namespace.nodes["/app"]?.stat.kind, .container)
            XCTAssertEqual(harness.namespace.nodes["/app/locks/orders"]?.stat.kind, .container)
        }
    }

    func testContainerSweptBetweenCreatesIsCreatedAgain() {
        let harness = LockHarness(.deferred)
        harness.acquire(1, session: 1)
        let holder = harness.takeEffects().grants[0]
        // Session 2's create is answered with "no node" because the container went before it ran.
        harness.acquire(2, session: 2, settle: false)
        harness.release(holder.node, session: 1, ticket: 10)
        harness.namespace.deliverAll()
        let effects = harness.takeEffects()
        XCTAssertEqual(effects.grantedTickets, [2])
        XCTAssertEqual(harness.waiterNodes().count, 1)
    }

    func testCreateWhoseReplyWasLostIsFoundAgainWithoutAnOrphan() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1)
            var lose = true
            harness.namespace.faults = { operation, _ in
                guard operation == .create, lose else { return nil }
                lose = false
                return .replyLost
            }
            harness.acquire(2, session: 2)
            XCTAssertEqual(harness.waiterNodes().count, 2, "\(delivery): the create happened")
            harness.advance(1_000)
            XCTAssertEqual(harness.waiterNodes().count, 2, "the node was adopted, not created again")
            let holder = harness.takeEffects().grants[0]
            harness.release(holder.node, session: 1, ticket: 10)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [2])
        }
    }

    func testRecoveryAdoptsOnlyANodeOwnedByTheSameSession() throws {
        try forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.namespace.createNow("/locks", mode: .container, owner: 0)
            harness.namespace.createNow("/locks/a", mode: .container, owner: 0)
            // Named for session 2 but owned by session 9 (say, a sidecar's earlier incarnation).
            let impostor = harness.namespace.createNow(WaiterName.createPath(lockPath: "/locks/a", kind: .exclusive, session: 2),
                                                       mode: .ephemeralSequential, owner: 9)
            var fail = true
            harness.namespace.faults = { operation, _ in
                guard operation == .create, fail else { return nil }
                fail = false
                return .unreachable
            }
            harness.acquire(2, session: 2)
            harness.advance(1_000)
            let nodes = harness.waiterNodes()
            XCTAssertEqual(nodes.count, 2, "\(delivery): a fresh node was created")
            XCTAssertEqual("/locks/a/" + nodes[0], try impostor.get().path)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [])
            harness.namespace.deleteNow(try impostor.get().path)
            XCTAssertEqual(harness.takeEffects().grantedTickets, [2])
        }
    }

    func testReleaseThatCannotReachTheStoreIsReportedAndRetried() {
        forEachDelivery { delivery in
            let harness = LockHarness(delivery)
            harness.acquire(1, session: 1)
            harness.acquire(2, session: 2)
            let holder = harness.takeEffects().grants[0]
            var unreachable = true
            harness.namespace.faults = { operation, _ in operation == .delete && unreachable ? .unreachable : nil }
            harness.release(holder.node, session: 1, ticket: 10)
            var effects = harness.takeEffects()
            XCTAssertEqual(effects.failures, [10: .storageFailure], "\(delivery)")
            XCTAssertEqual(effects.grantedTickets, [])
            XCTAssertFalse(harness.manager.checkToken(path: "/locks/a", token: holder.token))
            harness.advance(1_000)
            XCTAssertEqual(harness.waiterNodes().count, 2, "still unreachable")
            unreachable = false
            harness.advance(5_000)
            effects = harness.takeEffects()
            XCTAssertEqual(effects.grantedTickets, [2])
            XCTAssertEqual(effects.releasedTickets, [], "the client was already told")
            XCTAssertEqual(harness.waiterNodes().count, 1)
        }
    }

    func testCallbacksArrivingLaterAreEquivalentToImmediateOnes() {
        // Interleave requests with partial delivery: the outcome must match the immediate run.
        // (The lock node exists: acquires racing to create it are concurrent and may enter in any order.)
        func run(_ delivery: MemoryLockNamespace.Delivery, stepDelivery: Int) -> [Int] {
            let harness = LockHarness(delivery)
            harness.namespace.createNow("/locks", mode: .persistent, owner: 0)
            harness.namespace.createNow("/locks/a", mode: .persistent, owner: 0)
            var order: [Int] = []
            for index in 0..<30 {
                harness.acquire(index, session: UInt64(index + 1), kind: index % 4 == 0 ? .exclusive : .shared, settle: false)
                for _ in 0..<stepDelivery { harness.namespace.deliverOne() }
            }
            harness.settle()
            var held = harness.takeEffects().grants
            while !held.isEmpty {
                order += held.map(\.ticket)
                for grant in held { harness.release(grant.node, session: UInt64(grant.ticket + 1), ticket: 1_000 + grant.ticket) }
                held = harness.takeEffects().grants
            }
            return order
        }
        let expected = run(.immediate, stepDelivery: 0)
        XCTAssertEqual(expected, Array(0..<30))
        for step in 0..<4 { XCTAssertEqual(run(.deferred, stepDelivery: step), expected, "step \(step)") }
    }
}
