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

    // MARK: Item 2: no client request puts a node in a queue, ends another hold or wedges a lock

    private func sessionHex(_ harness: EngineHarness, _ connection: ConnectionID) -> String {
        let session = harness.engine.connections[connection]!.sessionID!
        return String(WaiterName(kind: .exclusive, session: session, sequence: 0).name.dropFirst(2).prefix(16))
    }

    func testForgedWaiterNodesAreRefusedAndTheLockKeepsGranting() throws {
        let harness = EngineHarness()
        for connection: ConnectionID in 1...3 { harness.openSession(connection) }
        let hold = harness.send(.acquire(LockRequest(path: "/locks/P")), on: 1)
        let held = try XCTUnwrap(granted(hold.outputs, to: 1, requestID: hold.requestID))
        let victim = sessionHex(harness, 2)
        let next = String(format: "%010d", harness.engine.namespace.node(at: "/locks/P")!.sequenceNext)
        let forgeries: [Request] = [
            .create(path: "/locks/P/x-deadbeefdeadbeef-0000000000", data: [], mode: .persistent),
            .create(path: "/locks/P/x-\(victim)-\(next)", data: [], mode: .ephemeral),
            .create(path: "/locks/P/r-\(victim)-\(next)", data: [], mode: .container),
            .create(path: "/locks/P/s-\(victim)-", data: WaiterName.permitData(1_000), mode: .persistentSequential),
            .create(path: "/locks/Q/x-deadbeefdeadbeef-0000000000", data: [], mode: .persistent), // anywhere
            .multi([.create(path: "/locks/R", data: [], mode: .container),
                    .create(path: "/locks/R/x-deadbeefdeadbeef-0000000000", data: [], mode: .persistent)]),
        ]
        for forgery in forgeries {
            XCTAssertEqual(errorCode(harness.call(forgery, on: 3)), .lockNodeReserved, "\(forgery)")
        }
        XCTAssertEqual(harness.engine.namespace.childNames(of: "/locks/P"), [NodePath.name(of: held.node)])
        XCTAssertNil(harness.engine.namespace.node(at: "/locks/R"), "a refused multi changes nothing")
        // The forger goes; the holder keeps its hold, and the victim's acquires of every kind are served.
        harness.engine.connectionClosed(3, now: harness.now)
        XCTAssertTrue(events(harness.engine.takeOutputs(), to: 1).isEmpty, "no false lockLost")
        let writer = harness.send(.acquire(LockRequest(path: "/locks/P")), on: 2)
        let release = harness.send(.release(node: held.node, token: held.token), on: 1)
        let written = try XCTUnwrap(granted(release.outputs, to: 2, requestID: writer.requestID))
        XCTAssertEqual(harness.call(.release(node: written.node, token: written.token), on: 2), .success(.empty))
        let reader = harness.send(.acquire(LockRequest(path: "/locks/P", kind: .shared)), on: 2)
        let read = try XCTUnwrap(granted(reader.outputs, to: 2, requestID: reader.requestID))
        guard case .success(.lockEntries(let entries)) = harness.call(.inspect(path: "/locks/P"), on: 1) else { return XCTFail() }
        XCTAssertEqual(entries.map(\.node), [read.node], "nothing invisible queued")
    }

    func testNoClientRequestDeletesOrChangesAWaiterNodeNotEvenItsOwn() throws {
        let harness = EngineHarness()
        for connection: ConnectionID in 1...3 { harness.openSession(connection) }
        let hold = harness.send(.acquire(LockRequest(path: "/locks/s", kind: .semaphore, permits: 2)), on: 1)
        let held = try XCTUnwrap(granted(hold.outputs, to: 1, requestID: hold.requestID))
        let attempts: [(Request, ConnectionID)] = [
            (.delete(path: held.node, expectedVersion: anyVersion), 3),
            (.delete(path: held.node, expectedVersion: anyVersion), 1),
            (.set(path: held.node, data: WaiterName.permitData(1_000), expectedVersion: anyVersion), 3),
            (.multi([.check(path: held.node, expectedVersion: anyVersion), .delete(path: held.node, expectedVersion: 0)]), 3),
        ]
        for (request, connection) in attempts {
            let (requestID, outputs) = harness.send(request, on: connection)
            XCTAssertEqual(replies(outputs, to: connection).first { $0.requestID == requestID }.flatMap { errorCode($0.result) },
                           .lockNodeReserved, "\(request) from \(connection)")
            XCTAssertTrue(events(outputs, to: 1).isEmpty, "\(request): the holder loses nothing")
        }
        XCTAssertEqual(harness.call(.checkToken(path: "/locks/s", token: held.token), on: 2), .success(.tokenStatus(current: true)))
        guard case .success(.data(_, let data)) = harness.call(.get(path: held.node, watch: false), on: 2) else { return XCTFail() }
        XCTAssertEqual(data, WaiterName.permitData(2), "the permits are unchanged")
        let other = harness.send(.acquire(LockRequest(path: "/locks/s", kind: .semaphore, permits: 2)), on: 2)
        XCTAssertNotNil(granted(other.outputs, to: 2, requestID: other.requestID), "both permits are still there")
        // The index of the refused operation is named; a multi without one goes through.
        XCTAssertEqual(harness.call(.multi([.check(path: "/", expectedVersion: anyVersion),
                                            .set(path: held.node, data: [], expectedVersion: anyVersion)]), on: 3),
                       .failure(ReplyError(.lockNodeReserved,
                                           "operation 1: \(held.node) is a waiter node's name: only acquire and release change those")))
    }

    /// A forged persistent waiter node left in a data directory from before the rule jams its lock
    /// (nobody answers for it); it may be deleted, and the lock works again.
    func testALeftoverPersistentWaiterNodeMayBeDeletedToRepairItsLock() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        // Sequence 0, as the first waiter gets: the two are ordered by session, the forgery's (0) first.
        let forged = "/locks/old/x-0000000000000000-0000000000"
        XCTAssertNoThrow(try harness.engine.namespace.create("/locks", data: [], mode: .persistent, session: 0, now: harness.now))
        XCTAssertNoThrow(try harness.engine.namespace.create("/locks/old", data: [], mode: .persistent, session: 0, now: harness.now))
        XCTAssertNoThrow(try harness.engine.namespace.create(forged, data: [], mode: .persistent, session: 0, now: harness.now))
        _ = harness.engine.takeOutputs()
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/locks/old", waitMilliseconds: 0)), on: 1)), .lockBusy)
        XCTAssertEqual(errorCode(harness.call(.set(path: forged, data: [1], expectedVersion: anyVersion), on: 2)), .lockNodeReserved)
        XCTAssertEqual(harness.call(.delete(path: forged, expectedVersion: anyVersion), on: 2), .success(.empty))
        let acquire = harness.send(.acquire(LockRequest(path: "/locks/old", waitMilliseconds: 0)), on: 1)
        XCTAssertNotNil(granted(acquire.outputs, to: 1, requestID: acquire.requestID), "\(acquire.outputs)")
    }

    func testALockPathThroughAWaiterNameIsRefusedAndTheLockPathLengthIsBounded() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/a/x-0000000000000001-0000000000")), on: 1)),
                       .lockNodeReserved)
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/a/x-0000000000000001-0000000000/b")), on: 1)),
                       .lockNodeReserved)
        XCTAssertNil(harness.engine.namespace.node(at: "/a"), "refused before anything was created")
        // A lock path leaves room for "/" and the 29-byte waiter name under pathBytesMax (1024): 994 bytes.
        let longest = "/" + String(repeating: "l", count: 993)
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: longest + "m", waitMilliseconds: 0)), on: 1)), .pathTooLong)
        let acquire = harness.send(.acquire(LockRequest(path: longest, waitMilliseconds: 0)), on: 1)
        let held = try XCTUnwrap(granted(acquire.outputs, to: 1, requestID: acquire.requestID))
        XCTAssertEqual(held.node.utf8.count, 1024)
    }

    /// Holding is not wedging: a session that takes a lock path first decides its kind (a 1000-permit
    /// semaphore, say) while it holds it; when its holds end, the lock takes any kind again.
    func testTheFirstHolderDecidesTheKindOnlyWhileItHolds() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        let squat = harness.send(.acquire(LockRequest(path: "/locks/k", kind: .semaphore, permits: 1_000)), on: 1)
        XCTAssertNotNil(granted(squat.outputs, to: 1, requestID: squat.requestID))
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/locks/k")), on: 2)), .lockKindMismatch)
        harness.engine.connectionClosed(1, now: harness.now)
        _ = harness.engine.takeOutputs()
        let acquire = harness.send(.acquire(LockRequest(path: "/locks/k")), on: 2)
        XCTAssertNotNil(granted(acquire.outputs, to: 2, requestID: acquire.requestID))
    }

    // MARK: Item 3: a waiting acquire whose node goes is answered at once

    func testAWaitingAcquireWhoseNodeIsDeletedIsAnsweredAtOnceAndLeavesInspect() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        let hold = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        let held = try XCTUnwrap(granted(hold.outputs, to: 1, requestID: hold.requestID))
        let waiting = harness.send(.acquire(LockRequest(path: "/locks/a", waitMilliseconds: 60_000)), on: 2)
        guard case .success(.lockEntries(let before)) = harness.call(.inspect(path: "/locks/a"), on: 2) else { return XCTFail() }
        let waiterNode = try XCTUnwrap(before.last?.node)
        // Nobody waits behind it: only its own watch can tell.
        let outputs = harness.deleteOutOfBand(waiterNode)
        let answer = replies(outputs, to: 2).first { $0.requestID == waiting.requestID }
        XCTAssertEqual(answer.flatMap { errorCode($0.result) }, .lockLost)
        XCTAssertTrue(events(outputs, to: 1).isEmpty, "the holder is not disturbed")
        guard case .success(.lockEntries(let after)) = harness.call(.inspect(path: "/locks/a"), on: 2) else { return XCTFail() }
        XCTAssertEqual(after.map(\.node), [held.node])
    }

    /// The embedded namespace tells the recipe of every deletion of its nodes (`reportsDeletions`),
    /// so a hold watches nothing, nor a waiter the node it waits behind; a deletion behind the
    /// recipe (an operator's forceRelease, `Engine.deleteLockNode`) still ends the hold at once,
    /// its `lockLost` before the next grant, which gets a higher token.
    func testAHoldSetsNoWatchAndItsNodeDeletedBehindItIsStillLostBeforeTheNextGrant() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        let hold = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        let held = try XCTUnwrap(granted(hold.outputs, to: 1, requestID: hold.requestID))
        XCTAssertEqual(harness.engine.locks.adapter?.watchCount, 0, "an uncontended hold sets no watch")
        let waiting = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 2)
        XCTAssertNil(granted(waiting.outputs, to: 2, requestID: waiting.requestID))
        XCTAssertEqual(harness.engine.locks.adapter?.watchCount, 0, "nor does a waiter behind the recipe's own node")
        let outputs = harness.deleteOutOfBand(held.node)
        let lost = outputs.firstIndex { output in
            if case .send(1, .event(.lockLost(held.node, held.token, .nodeDeleted))) = output { return true }
            return false
        }
        let next = outputs.firstIndex { output in
            if case .send(2, .reply(let reply)) = output { return reply.requestID == waiting.requestID }
            return false
        }
        XCTAssertNotNil(lost, "\(outputs)")
        XCTAssertNotNil(next, "\(outputs)")
        if let lost, let next { XCTAssertLessThan(lost, next, "the loss is told before the next grant") }
        let grant = try XCTUnwrap(granted(outputs, to: 2, requestID: waiting.requestID))
        XCTAssertGreaterThan(grant.token, held.token)
        XCTAssertEqual(harness.call(.release(node: grant.node, token: grant.token), on: 2), .success(.empty))
        XCTAssertEqual(harness.engine.locks.adapter?.watchCount, 0, "no internal watch left behind")
    }
}
