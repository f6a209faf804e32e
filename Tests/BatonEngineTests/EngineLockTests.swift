@testable import BatonEngine
import BatonLocks
import BatonNamespace
import BatonProtocol
import XCTest

final class EngineLockTests: XCTestCase {
    private func result(_ outputs: [EngineOutput], to connection: ConnectionID, requestID: UInt32) -> Result<ReplyBody, ReplyError>? {
        replies(outputs, to: connection).first { $0.requestID == requestID }?.result
    }

    func testAcquireIsOneRequestAndTheGrantIsItsDelayedReply() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        let first = harness.send(.acquire(LockRequest(path: "/locks/orders")), on: 1)
        let held = try XCTUnwrap(granted(first.outputs, to: 1, requestID: first.requestID))
        XCTAssertTrue(held.node.hasPrefix("/locks/orders/x-"))
        let second = harness.send(.acquire(LockRequest(path: "/locks/orders")), on: 2)
        XCTAssertNil(result(second.outputs, to: 2, requestID: second.requestID), "the second waits")
        let release = harness.send(.release(node: held.node, token: held.token), on: 1)
        XCTAssertEqual(result(release.outputs, to: 1, requestID: release.requestID), .success(.empty))
        let next = try XCTUnwrap(granted(release.outputs, to: 2, requestID: second.requestID))
        XCTAssertGreaterThan(next.token, held.token)
        XCTAssertEqual(harness.engine.namespace.node(at: "/locks/orders")?.stat.kind, .container)
    }

    func testPathsCloseToTheLockPathAndNodeLastAcceptedAreStillChecked() throws {
        // The engine does not check again the lock path it accepted last, nor a release's node that is
        // the hold's own: any other path is checked, however close to those.
        let harness = EngineHarness()
        harness.openSession(1)
        let hold = harness.send(.acquire(LockRequest(path: "/l/a")), on: 1)
        let held = try XCTUnwrap(granted(hold.outputs, to: 1, requestID: hold.requestID))
        for path in ["/l/a/", "/l/.", "/l//", "l/aa", "/l/a\u{0}"] {
            XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: path)), on: 1)), .invalidPath, path)
        }
        // A node of as many bytes as the hold's, not the hold's (no leading slash).
        let node = "x" + held.node.dropFirst()
        XCTAssertEqual(errorCode(harness.call(.release(node: node, token: held.token), on: 1)), .invalidPath)
        XCTAssertEqual(harness.call(.release(node: held.node, token: held.token), on: 1), .success(.empty))
        XCTAssertEqual(errorCode(harness.call(.release(node: held.node + "/", token: held.token), on: 1)), .invalidPath)
    }

    func testRecordsTheGrantRestsOnGoOutBeforeIt() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        let acquire = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        let replyIndex = try XCTUnwrap(acquire.outputs.firstIndex {
            if case .send(1, .reply(let reply)) = $0 { reply.requestID == acquire.requestID } else { false }
        })
        let persisted = acquire.outputs.enumerated().filter { if case .persist = $0.element { true } else { false } }
        XCTAssertFalse(persisted.isEmpty, "creating the lock container is logged")
        XCTAssertTrue(persisted.allSatisfy { $0.offset < replyIndex })
    }

    func testAUnixHolderThatDisconnectsPassesTheLockOnAtOnce() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        _ = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        let waiting = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 2)
        harness.engine.connectionClosed(1, now: harness.now)
        XCTAssertNotNil(granted(harness.engine.takeOutputs(), to: 2, requestID: waiting.requestID))
    }

    func testAWaiterWhoseConnectionClosesLeavesTheQueue() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2, transport: .tcp)
        harness.openSession(3)
        let holder = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        let held = try XCTUnwrap(granted(holder.outputs, to: 1, requestID: holder.requestID))
        _ = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 2)
        let third = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 3)
        harness.engine.connectionClosed(2, now: harness.now) // TCP: the session lives on, detached
        _ = harness.engine.takeOutputs()
        XCTAssertEqual(harness.engine.namespace.childNames(of: "/locks/a")?.count, 2)
        let release = harness.send(.release(node: held.node, token: held.token), on: 1)
        XCTAssertNotNil(granted(release.outputs, to: 3, requestID: third.requestID))
    }

    func testSessionExpiryEndsTheHoldWithLockLostAndGrantsTheNext() throws {
        let harness = EngineHarness()
        harness.openSession(1, timeoutMilliseconds: 1_000)
        harness.openSession(2, timeoutMilliseconds: 60_000)
        let holder = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        let held = try XCTUnwrap(granted(holder.outputs, to: 1, requestID: holder.requestID))
        let waiting = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 2)
        harness.now = harness.now.advanced(by: 1_500)
        harness.engine.tick(now: harness.now)
        let outputs = harness.engine.takeOutputs()
        XCTAssertTrue(events(outputs, to: 1).contains(.lockLost(node: held.node, token: held.token, reason: .sessionExpired)),
                      "\(outputs)")
        XCTAssertNotNil(granted(outputs, to: 2, requestID: waiting.requestID))
    }

    func testLeaseExpiryTellsTheHolderAndGrantsTheNext() throws {
        let harness = EngineHarness()
        harness.openSession(1, timeoutMilliseconds: 60_000)
        harness.openSession(2, timeoutMilliseconds: 60_000)
        let holder = harness.send(.acquire(LockRequest(path: "/locks/a", leaseMilliseconds: 2_000)), on: 1)
        let held = try XCTUnwrap(granted(holder.outputs, to: 1, requestID: holder.requestID))
        let waiting = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 2)
        XCTAssertEqual(harness.engine.nextDeadlineMilliseconds, harness.now.monotonicMilliseconds + 2_000)
        harness.now = harness.now.advanced(by: 2_000)
        harness.engine.tick(now: harness.now)
        let outputs = harness.engine.takeOutputs()
        XCTAssertEqual(events(outputs, to: 1), [.lockLost(node: held.node, token: held.token, reason: .leaseExpired)])
        XCTAssertNotNil(granted(outputs, to: 2, requestID: waiting.requestID))
        // The node is gone: the hold already ended (PROTOCOL.md §12.6).
        XCTAssertEqual(errorCode(harness.call(.release(node: held.node, token: held.token), on: 1)), .lockLost)
    }

    func testANodeDeletedOutOfBandIsALostHold() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        let holder = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        let held = try XCTUnwrap(granted(holder.outputs, to: 1, requestID: holder.requestID))
        let waiting = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 2)
        let outputs = harness.deleteOutOfBand(held.node)
        XCTAssertEqual(events(outputs, to: 1), [.lockLost(node: held.node, token: held.token, reason: .nodeDeleted)])
        XCTAssertNotNil(granted(outputs, to: 2, requestID: waiting.requestID))
    }

    func testTryCancelCheckTokenAndInspect() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        let holder = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        let held = try XCTUnwrap(granted(holder.outputs, to: 1, requestID: holder.requestID))
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/locks/a", waitMilliseconds: 0)), on: 2)), .lockBusy)
        let waiting = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 2)
        harness.advance(40)
        guard case .success(.lockEntries(let entries)) = harness.call(.inspect(path: "/locks/a"), on: 1) else {
            return XCTFail()
        }
        XCTAssertEqual(entries.map(\.position), [.holder, .waiter])
        XCTAssertEqual(entries.map(\.clientName), ["client-1", "client-2"])
        XCTAssertEqual(entries.map(\.ageMilliseconds), [40, 40])
        XCTAssertEqual(harness.call(.checkToken(path: "/locks/a", token: held.token), on: 2), .success(.tokenStatus(current: true)))
        XCTAssertEqual(harness.call(.checkToken(path: "/locks/a", token: held.token + 1), on: 2),
                       .success(.tokenStatus(current: false)))
        let cancel = harness.send(.cancel(acquireRequestID: waiting.requestID), on: 2)
        let answers = replies(cancel.outputs, to: 2)
        XCTAssertEqual(answers.map(\.requestID), [waiting.requestID, cancel.requestID], "the acquire's answer comes first")
        XCTAssertEqual(answers.map { errorCode($0.result) }, [.lockCancelled, nil])
        // Already answered: cancel does nothing and still replies ok (PROTOCOL.md §12.4).
        XCTAssertEqual(harness.call(.cancel(acquireRequestID: waiting.requestID), on: 2), .success(.empty))
        XCTAssertEqual(errorCode(harness.call(.inspect(path: "bad"), on: 2)), .invalidPath)
        XCTAssertEqual(harness.engine.namespace.childNames(of: "/locks/a")?.count, 1)
    }

    func testReadersShareAndSemaphoresCountPermitsThroughTheEngine() throws {
        let harness = EngineHarness()
        for connection in 1...4 { harness.openSession(ConnectionID(connection)) }
        let readers = [1, 2].map { harness.send(.acquire(LockRequest(path: "/locks/rw", kind: .shared)), on: ConnectionID($0)) }
        XCTAssertNotNil(granted(readers[0].outputs, to: 1, requestID: readers[0].requestID))
        XCTAssertNotNil(granted(readers[1].outputs, to: 2, requestID: readers[1].requestID))
        let writer = harness.send(.acquire(LockRequest(path: "/locks/rw", kind: .exclusive)), on: 3)
        XCTAssertNil(result(writer.outputs, to: 3, requestID: writer.requestID))
        let semaphore = (1...3).map { connection in
            (connection: ConnectionID(connection),
             sent: harness.send(.acquire(LockRequest(path: "/locks/pool", kind: .semaphore, permits: 2)), on: ConnectionID(connection)))
        }
        XCTAssertEqual(semaphore.map { granted($0.sent.outputs, to: $0.connection, requestID: $0.sent.requestID) != nil },
                       [true, true, false])
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/locks/pool", kind: .semaphore, permits: 5)), on: 4)),
                       .lockKindMismatch)
    }

    func testTokensKeepIncreasingWhenTheLockDirectoryIsSweptAndMadeAgain() throws {
        let harness = EngineHarness()
        harness.openSession(1, timeoutMilliseconds: 60_000)
        var tokens: [UInt64] = []
        for _ in 0..<3 {
            let acquire = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
            let held = try XCTUnwrap(granted(acquire.outputs, to: 1, requestID: acquire.requestID))
            tokens.append(held.token)
            XCTAssertEqual(harness.call(.release(node: held.node, token: held.token), on: 1), .success(.empty))
            harness.advance(2_000) // past the container grace: the directory goes
            XCTAssertNil(harness.engine.namespace.node(at: "/locks/a"))
        }
        XCTAssertEqual(tokens, tokens.sorted())
        XCTAssertEqual(Set(tokens).count, 3)
        XCTAssertEqual(harness.engine.locks.adapter?.watchCount, 0, "no internal watch left behind")
    }
    /// A connection's waiting acquires are kept in its state: an id still waiting is refused (before
    /// the request's own checks), a grant or a failure frees the id and the connection's count, the
    /// statistics count what waits, and a closed connection's acquires leave the queue.
    func testAConnectionsWaitingAcquiresAreCountedAndFreedByTheirAnswers() throws {
        let harness = EngineHarness { $0.limits.pendingRequestsPerConnectionMax = 2 }
        harness.openSession(1)
        harness.openSession(2)
        harness.openSession(3)
        let holder = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        let held = try XCTUnwrap(granted(holder.outputs, to: 1, requestID: holder.requestID))
        XCTAssertEqual(harness.call(.acquire(LockRequest(path: "/locks/b")), on: 1).isSuccess, true)
        XCTAssertEqual(harness.engine.connections[1]?.pendingRequests, 0, "a grant at once leaves nothing waiting")
        let waiting = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 2)
        XCTAssertNil(result(waiting.outputs, to: 2, requestID: waiting.requestID))
        // The same id again, even with a bad path or as a set: refused for the id, and nothing changes.
        for request in [Request.acquire(LockRequest(path: "no/slash")),
                        .acquireAll(locks: [LockSetMember(path: "/locks/b")], waitMilliseconds: 0, leaseMilliseconds: 0)] {
            harness.engine.handle(request, requestID: waiting.requestID, from: 2, now: harness.now)
            let refusal = result(harness.engine.takeOutputs(), to: 2, requestID: waiting.requestID)
            XCTAssertEqual(refusal, .failure(ReplyError(.invalidArgument, "request id \(waiting.requestID) names an acquire still waiting")))
        }
        let set = harness.send(.acquireAll(locks: [LockSetMember(path: "/locks/b")], waitMilliseconds: LockRequest.waitForever,
                                           leaseMilliseconds: 0), on: 2)
        XCTAssertNil(result(set.outputs, to: 2, requestID: set.requestID), "the set waits too")
        guard case .success(.lockEntries(let entries)) = harness.call(.inspect(path: "/locks/b"), on: 1) else {
            return XCTFail("inspect failed")
        }
        XCTAssertEqual(entries.map(\.clientName), ["client-1", "client-2"], "the set's acquire names its client")
        XCTAssertEqual(harness.engine.lockPendingAcquires(on: 2), [waiting.requestID, set.requestID])
        XCTAssertEqual(harness.engine.connections[2]?.pendingRequests, 2)
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "no/slash")), on: 2)), .tooManyPendingRequests)
        let third = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 3)
        XCTAssertEqual(harness.engine.lockStatistics.waiters, 3)
        XCTAssertEqual(harness.engine.lockStatistics.holders, 2)
        // Connection 3's waiter leaves with its connection; the holder of /locks/a lets go: connection
        // 2's acquire is granted (its id and its room freed), its set still waits for /locks/b.
        harness.engine.connectionClosed(3, now: harness.now)
        XCTAssertEqual(replies(harness.engine.takeOutputs(), to: 3), [])
        XCTAssertEqual(harness.engine.lockStatistics.waiters, 2)
        let release = harness.send(.release(node: held.node, token: held.token), on: 1)
        XCTAssertNotNil(granted(release.outputs, to: 2, requestID: waiting.requestID))
        XCTAssertNil(result(release.outputs, to: 3, requestID: third.requestID))
        XCTAssertEqual(harness.engine.lockPendingAcquires(on: 2), [set.requestID])
        XCTAssertEqual(harness.engine.connections[2]?.pendingRequests, 1)
        XCTAssertEqual(harness.engine.lockStatistics.waiters, 1)
        // The granted id may name a new acquire.
        harness.engine.handle(.acquire(LockRequest(path: "/locks/c")), requestID: waiting.requestID, from: 2, now: harness.now)
        XCTAssertNotNil(granted(harness.engine.takeOutputs(), to: 2, requestID: waiting.requestID))
        let cancel = harness.send(.cancel(acquireRequestID: set.requestID), on: 2)
        XCTAssertEqual(replies(cancel.outputs, to: 2).map { errorCode($0.result) }, [.lockCancelled, nil])
        XCTAssertEqual(harness.engine.lockPendingAcquires(on: 2), [])
        XCTAssertEqual(harness.engine.connections[2]?.pendingRequests, 0)
        XCTAssertEqual(harness.engine.lockStatistics.waiters, 0)
    }
}
