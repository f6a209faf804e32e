@testable import BatonEngine
import BatonLocks
import BatonNamespace
import BatonProtocol
import XCTest

/// Behaviours where the engine and Proto/PROTOCOL.md once disagreed; each test names the section.
final class EngineProtocolConformanceTests: XCTestCase {
    /// What a connection was sent, in order, as short words: "reply <opcode> <code>" or the event.
    private func frames(_ outputs: [EngineOutput], to connection: ConnectionID) -> [String] {
        outputs.compactMap { output -> String? in
            switch output {
            case .send(connection, .reply(let reply)):
                let code = if case .failure(let error) = reply.result { error.code.name } else { "ok" }
                return "reply \(reply.requestID == 0 ? "0 " : "")\(String(describing: reply.opcode)) \(code)"
            case .send(connection, .event(let event)):
                switch event {
                case .watch(let type, let path): return "watch \(type) \(path)"
                case .lockLost(_, _, let reason): return "lockLost \(reason)"
                case .lockSuspended: return "lockSuspended"
                case .sessionExpired: return "sessionExpired"
                case .revocationRequested: return "revocationRequested"
                case .lockResumed: return "lockResumed"
                }
            case .close(connection):
                return "close"
            default:
                return nil
            }
        }
    }

    // MARK: Sessions (§9)

    func testExpiryOnAnOpenConnectionTellsHoldsAndAcquiresThenTheSession() throws {
        let harness = EngineHarness()
        let owner = harness.openSession(1, timeoutMilliseconds: 1_000)
        harness.openSession(2, timeoutMilliseconds: 60_000)
        _ = harness.send(.acquire(LockRequest(path: "/l/b")), on: 2)
        let hold = harness.send(.acquire(LockRequest(path: "/l/a")), on: 1)
        XCTAssertNotNil(granted(hold.outputs, to: 1, requestID: hold.requestID))
        _ = harness.send(.acquire(LockRequest(path: "/l/b")), on: 1)
        harness.advance(1_000)
        let outputs = harness.engine.takeOutputs()
        XCTAssertEqual(frames(outputs, to: 1), ["lockLost sessionExpired", "reply acquire sessionExpired", "sessionExpired"])
        XCTAssertEqual(events(outputs, to: 1).last, .sessionExpired(sessionID: owner.id))
        XCTAssertEqual(closes(outputs), [], "the connection stays open")
    }

    func testCloseSessionCancelsAcquiresAndEndsHoldsBeforeItsReply() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        _ = harness.send(.acquire(LockRequest(path: "/l/b")), on: 2)
        _ = harness.send(.acquire(LockRequest(path: "/l/a")), on: 1)
        _ = harness.send(.acquire(LockRequest(path: "/l/b")), on: 1)
        let (_, outputs) = harness.send(.closeSession, on: 1)
        XCTAssertEqual(frames(outputs, to: 1), ["reply acquire lockCancelled", "lockLost sessionExpired", "reply closeSession ok"])
        XCTAssertEqual(harness.engine.namespace.childNames(of: "/l/a"), [])
        XCTAssertEqual(harness.engine.namespace.childNames(of: "/l/b")?.count, 1, "only the other session's hold")
    }

    func testWatchesOfADetachedSessionSurviveAResumeAndFireOnTheNewConnection() {
        let harness = EngineHarness()
        let owner = harness.openSession(1, transport: .tcp, timeoutMilliseconds: 10_000)
        harness.openSession(2)
        _ = harness.call(.create(path: "/a", data: [], mode: .persistent), on: 1)
        _ = harness.call(.get(path: "/a", watch: true), on: 1)
        harness.engine.connectionClosed(1, now: harness.now)
        harness.connect(3, transport: .tcp)
        _ = harness.call(.resumeSession(sessionID: owner.id, secret: owner.secret), on: 3)
        // The watch did not fire while detached: it is still registered, now for connection 3.
        let (_, outputs) = harness.send(.set(path: "/a", data: [1], expectedVersion: anyVersion), on: 2)
        XCTAssertEqual(events(outputs, to: 3), [.watch(type: .dataChanged, path: "/a")])
    }

    func testALockLostWhileDetachedIsQueuedAndDeliveredAfterTheResume() throws {
        let harness = EngineHarness()
        let owner = harness.openSession(1, transport: .tcp, timeoutMilliseconds: 10_000)
        let hold = harness.send(.acquire(LockRequest(path: "/l", leaseMilliseconds: 1_000)), on: 1)
        let held = try XCTUnwrap(granted(hold.outputs, to: 1, requestID: hold.requestID))
        harness.engine.connectionClosed(1, now: harness.now)
        harness.advance(1_000)
        XCTAssertEqual(harness.engine.takeOutputs().filter { if case .send = $0 { true } else { false } }, [])
        harness.connect(2, transport: .tcp)
        let (_, outputs) = harness.send(.resumeSession(sessionID: owner.id, secret: owner.secret), on: 2)
        XCTAssertEqual(frames(outputs, to: 2), ["reply resumeSession ok", "lockLost leaseExpired"])
        XCTAssertEqual(events(outputs, to: 2), [.lockLost(node: held.node, token: held.token, reason: .leaseExpired)])
    }

    // MARK: Shutdown (§4.6)

    func testShutdownAnswersWaitingAcquiresThenSaysGoodbyeThenEndsEverySession() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2, transport: .tcp)
        let detached = harness.openSession(3, transport: .tcp)
        _ = harness.call(.create(path: "/e1", data: [], mode: .ephemeral), on: 1)
        _ = harness.call(.create(path: "/e3", data: [], mode: .ephemeral), on: 3)
        _ = harness.call(.exists(path: "/e1", watch: true), on: 2)
        harness.engine.connectionClosed(3, now: harness.now)
        let hold = harness.send(.acquire(LockRequest(path: "/l")), on: 1)
        XCTAssertNotNil(granted(hold.outputs, to: 1, requestID: hold.requestID))
        let waiting = harness.send(.acquire(LockRequest(path: "/l")), on: 2)
        _ = harness.engine.takeOutputs()

        harness.engine.shutdown(now: harness.now)
        let outputs = harness.engine.takeOutputs()
        XCTAssertEqual(frames(outputs, to: 1), ["reply 0 hello shuttingDown", "close"])
        XCTAssertEqual(frames(outputs, to: 2), ["reply acquire shuttingDown", "reply 0 hello shuttingDown", "close"])
        XCTAssertEqual(replies(outputs, to: 2).first?.requestID, waiting.requestID)
        // Nothing follows a connection's close (the deletion of /e1 fires no event to connection 2).
        for (index, output) in outputs.enumerated() {
            guard case .close(let connection) = output else { continue }
            for later in outputs[(index + 1)...] {
                if case .send(connection, _) = later { XCTFail("\(later) after the close of \(connection)") }
            }
        }
        XCTAssertEqual(harness.engine.sessionCount, 0)
        XCTAssertEqual(harness.engine.connectionCount, 0)
        XCTAssertEqual(harness.engine.namespace.sessionCount, 0)
        XCTAssertNil(harness.engine.namespace.node(at: "/e1"))
        XCTAssertNil(harness.engine.namespace.node(at: "/e3"), "a detached session ends too")
        XCTAssertNil(harness.engine.namespace.session(detached.id))
        XCTAssertEqual(harness.engine.namespace.childNames(of: "/l"), [])
        XCTAssertEqual(harness.engine.locks.manager?.waiterCount, 0)

        // Afterwards: late closes are no-ops, new connections are refused.
        harness.engine.connectionClosed(1, now: harness.now)
        XCTAssertEqual(harness.engine.takeOutputs(), [])
        XCTAssertFalse(harness.engine.connectionOpened(9, transport: .unix, now: harness.now))
        XCTAssertEqual(frames(harness.engine.takeOutputs(), to: 9), ["reply 0 hello shuttingDown", "close"])
    }

    func testShutdownSendsNothingAfterAGoodbyeEvenWhenACancelWouldGrant() throws {
        let harness = EngineHarness()
        for connection in 1...3 { harness.openSession(ConnectionID(connection)) }
        // A reader holds; a writer (connection 1) waits; a reader (connection 2) waits behind the writer.
        let reader = harness.send(.acquire(LockRequest(path: "/rw", kind: .shared)), on: 3)
        XCTAssertNotNil(granted(reader.outputs, to: 3, requestID: reader.requestID))
        _ = harness.send(.acquire(LockRequest(path: "/rw", kind: .exclusive)), on: 1)
        let behind = harness.send(.acquire(LockRequest(path: "/rw", kind: .shared)), on: 2)
        XCTAssertNil(granted(behind.outputs, to: 2, requestID: behind.requestID))
        harness.engine.shutdown(now: harness.now)
        let outputs = harness.engine.takeOutputs()
        // Cancelling the writer entitles the waiting reader; its grant must not follow its goodbye.
        XCTAssertEqual(frames(outputs, to: 1), ["reply acquire shuttingDown", "reply 0 hello shuttingDown", "close"])
        XCTAssertEqual(frames(outputs, to: 2), ["reply acquire shuttingDown", "reply 0 hello shuttingDown", "close"])
        XCTAssertEqual(frames(outputs, to: 3), ["reply 0 hello shuttingDown", "close"])
        XCTAssertEqual(harness.engine.namespace.childNames(of: "/rw"), [])
        XCTAssertEqual(harness.engine.locks.manager?.waiterCount, 0)
    }

    // MARK: Ordering (§4.4)

    func testAWatchEventForADeletionComesBeforeTheGrantItAllows() throws {
        let harness = EngineHarness()
        for connection in 1...2 { harness.openSession(ConnectionID(connection)) }
        let hold = harness.send(.acquire(LockRequest(path: "/l")), on: 1)
        let held = try XCTUnwrap(granted(hold.outputs, to: 1, requestID: hold.requestID))
        let waiting = harness.send(.acquire(LockRequest(path: "/l")), on: 2)
        // Connection 2 also watches the holder's node; the recipe's own watch on it was set first.
        XCTAssertEqual(harness.call(.exists(path: held.node, watch: true), on: 2).isSuccessWithStat, true)
        let release = harness.send(.release(node: held.node, token: held.token), on: 1)
        XCTAssertEqual(frames(release.outputs, to: 2), ["watch deleted \(held.node)", "reply acquire ok"])
        XCTAssertNotNil(granted(release.outputs, to: 2, requestID: waiting.requestID))
        XCTAssertEqual(frames(release.outputs, to: 1), ["reply release ok"])
    }

    func testAReleaseIsAnsweredBeforeTheGrantItAllows() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        let hold = harness.send(.acquire(LockRequest(path: "/l")), on: 1)
        let held = try XCTUnwrap(granted(hold.outputs, to: 1, requestID: hold.requestID))
        // Another owner of the same session waits (without one it would be refused, §12.9).
        let waiting = harness.send(.acquire(LockRequest(path: "/l", owner: "second")), on: 1)
        let release = harness.send(.release(node: held.node, token: held.token), on: 1)
        XCTAssertEqual(replies(release.outputs, to: 1).map(\.requestID), [release.requestID, waiting.requestID])
        XCTAssertNotNil(granted(release.outputs, to: 1, requestID: waiting.requestID))
    }

    // MARK: Locks (§12)

    func testReleaseErrors() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        let hold = harness.send(.acquire(LockRequest(path: "/l")), on: 1)
        let held = try XCTUnwrap(granted(hold.outputs, to: 1, requestID: hold.requestID))
        XCTAssertEqual(errorCode(harness.call(.release(node: "l/x", token: held.token), on: 2)), .invalidPath)
        XCTAssertEqual(errorCode(harness.call(.release(node: held.node, token: held.token), on: 2)), .notHolder, "another session's hold")
        XCTAssertEqual(errorCode(harness.call(.release(node: "/l/x-gone-0000000042", token: held.token), on: 1)), .lockLost, "no such node")
        XCTAssertEqual(errorCode(harness.call(.release(node: "/nowhere/x", token: held.token), on: 1)), .lockLost)
        // Releasing one's own waiting node (found with inspect) cancels that acquire.
        let waiting = harness.send(.acquire(LockRequest(path: "/l")), on: 2)
        guard case .success(.lockEntries(let entries)) = harness.call(.inspect(path: "/l"), on: 2) else { return XCTFail() }
        let waiterNode = try XCTUnwrap(entries.last?.node)
        let release = harness.send(.release(node: waiterNode, token: try XCTUnwrap(entries.last?.token)), on: 2)
        XCTAssertEqual(frames(release.outputs, to: 2), ["reply acquire lockCancelled", "reply release ok"])
        XCTAssertEqual(replies(release.outputs, to: 2).first?.requestID, waiting.requestID)
        XCTAssertNil(harness.engine.namespace.node(at: waiterNode))
    }

    func testPermitsMustBeOneExceptForSemaphores() {
        let harness = EngineHarness()
        harness.openSession(1)
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/l", kind: .exclusive, permits: 2)), on: 1)),
                       .invalidArgument)
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/l", kind: .shared, permits: 0)), on: 1)),
                       .invalidArgument)
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/l", kind: .semaphore, permits: 0)), on: 1)),
                       .invalidArgument)
        XCTAssertNil(harness.engine.namespace.node(at: "/l"), "nothing was created")
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/l/./x")), on: 1)), .invalidPath)
        XCTAssertEqual(harness.call(.acquire(LockRequest(path: "/l", kind: .semaphore, permits: 3)), on: 1).isSuccess, true)
    }

    func testCheckTokenAndInspectOfPathsThatAreNotLocks() {
        let harness = EngineHarness()
        harness.openSession(1)
        XCTAssertEqual(errorCode(harness.call(.checkToken(path: "no/slash", token: 1), on: 1)), .invalidPath)
        XCTAssertEqual(harness.call(.checkToken(path: "/missing", token: 1), on: 1), .success(.tokenStatus(current: false)))
        XCTAssertEqual(errorCode(harness.call(.inspect(path: "/missing"), on: 1)), .noNode)
        XCTAssertEqual(harness.call(.inspect(path: "/"), on: 1), .success(.lockEntries([])), "a node nobody waits on")
    }

    func testCancelOfAnUnknownRequestIsOk() {
        let harness = EngineHarness()
        harness.openSession(1)
        let (requestID, outputs) = harness.send(.cancel(acquireRequestID: 12_345), on: 1)
        XCTAssertEqual(replies(outputs, to: 1), [Reply(requestID: requestID, opcode: .cancel, result: .success(.empty))])
    }

    // MARK: Frames and handshake (§3.4, §4.1)

    func testUndecodableFramesWithoutARequestIDAreAnsweredAsTheConnection() {
        let harness = EngineHarness()
        harness.openSession(1)
        // Too short to hold a request id: request id 0, opcode hello.
        harness.engine.decodeFailed(DecodeFailure(.malformedFrame, "truncated"), from: 1, now: harness.now)
        let outputs = harness.engine.takeOutputs()
        XCTAssertEqual(replies(outputs, to: 1), [DecodeFailure(.malformedFrame, "truncated").reply])
        XCTAssertEqual(frames(outputs, to: 1), ["reply 0 hello malformedFrame", "close"])
    }

    func testAFailedHelloThatDoesNotCloseLeavesTheConnectionAwaitingHello() {
        let harness = EngineHarness()
        XCTAssertTrue(harness.engine.connectionOpened(1, transport: .unix, now: harness.now))
        let long = String(repeating: "n", count: Limits.default.clientNameBytesMax + 1)
        XCTAssertEqual(errorCode(harness.call(.hello(version: ProtocolVersion.current, clientName: long), on: 1)), .invalidArgument)
        XCTAssertEqual(errorCode(harness.call(.ping, on: 1)), .handshakeRequired, "still no handshake")
        let harness2 = EngineHarness()
        XCTAssertTrue(harness2.engine.connectionOpened(1, transport: .unix, now: harness2.now))
        _ = harness2.call(.hello(version: ProtocolVersion.current, clientName: long), on: 1)
        guard case .success(.hello) = harness2.call(.hello(version: ProtocolVersion.current, clientName: "ok"), on: 1) else {
            return XCTFail("a second, good hello is accepted")
        }
    }
}
