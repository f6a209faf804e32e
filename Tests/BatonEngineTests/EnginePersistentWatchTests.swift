@testable import BatonEngine
import BatonLocks
import BatonNamespace
import BatonProtocol
import XCTest

/// Persistent and recursive watches through the engine (PROTOCOL.md §11.1): their events keep the
/// order of §4.4 with one-shot events, lock traffic and replies.
final class EnginePersistentWatchTests: XCTestCase {
    func testEventsInOrderWithOneShotEventsAndBeforeTheReply() {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        XCTAssertEqual(harness.call(.addWatch(path: "/t", mode: .recursive), on: 2), .success(.empty))
        XCTAssertEqual(harness.call(.addWatch(path: "/t/a", mode: .persistent), on: 2), .success(.empty))
        XCTAssertEqual(harness.call(.exists(path: "/t", watch: true), on: 2), .success(.exists(nil)))
        let (requestID, outputs) = harness.send(.multi([
            .create(path: "/t", data: [], mode: .persistent),
            .create(path: "/t/a", data: [], mode: .persistent),
            .set(path: "/t/a", data: [1], expectedVersion: -1),
            .set(path: "/t/a", data: [2], expectedVersion: -1),
        ]), on: 1)
        // /t: the one-shot exists watch and the recursive one give one event; /t/a: the persistent and
        // the recursive one give one event per change; /t's childrenChanged reaches no watch of session 2.
        XCTAssertEqual(events(outputs, to: 2), [
            .watch(type: .created, path: "/t"),
            .watch(type: .created, path: "/t/a"),
            .watch(type: .dataChanged, path: "/t/a"),
            .watch(type: .dataChanged, path: "/t/a"),
        ])
        guard case .send(1, .reply(let reply))? = outputs.last else { return XCTFail("the reply comes last: \(outputs)") }
        XCTAssertEqual(reply.requestID, requestID)
        // Still registered: the one-shot is gone, so /t's deletion reaches session 2 through the recursive watch only.
        _ = harness.call(.delete(path: "/t/a", expectedVersion: -1), on: 1)
        let deleted = harness.send(.delete(path: "/t", expectedVersion: -1), on: 1).outputs
        XCTAssertEqual(events(deleted, to: 2), [.watch(type: .deleted, path: "/t")])
        XCTAssertEqual(harness.call(.removeWatches(path: "/t", mode: .recursive), on: 2), .success(.empty))
        XCTAssertEqual(errorCode(harness.call(.removeWatches(path: "/t", mode: .recursive), on: 2)), .noWatch)
        XCTAssertEqual(events(harness.send(.create(path: "/t", data: [], mode: .persistent), on: 1).outputs, to: 2), [])
    }

    /// A recursive watch over a lock's directory sees its waiter nodes come and go: what an observer
    /// of an election watches (the lock recipe's own internal watches fire alongside).
    func testRecursiveWatchSeesLockTraffic() {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        XCTAssertEqual(harness.call(.addWatch(path: "/locks", mode: .recursive), on: 2), .success(.empty))
        let acquire = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        guard let grant = granted(acquire.outputs, to: 1, requestID: acquire.requestID) else {
            return XCTFail("no grant: \(acquire.outputs)")
        }
        XCTAssertTrue(events(acquire.outputs, to: 2).contains(.watch(type: .created, path: grant.node)))
        let release = harness.send(.release(node: grant.node, token: grant.token), on: 1)
        XCTAssertTrue(events(release.outputs, to: 2).contains(.watch(type: .deleted, path: grant.node)))
    }

    func testADetachedSessionGetsItsEventsAfterResuming() {
        let harness = EngineHarness()
        let session = harness.openSession(1, transport: .tcp)
        harness.openSession(2)
        XCTAssertEqual(harness.call(.addWatch(path: "/d", mode: .persistent), on: 1), .success(.empty))
        harness.engine.connectionClosed(1, now: harness.now)
        _ = harness.call(.create(path: "/d", data: [], mode: .persistent), on: 2)
        _ = harness.call(.set(path: "/d", data: [1], expectedVersion: -1), on: 2)
        harness.connect(3, transport: .tcp)
        let resumed = harness.send(.resumeSession(sessionID: session.id, secret: session.secret), on: 3)
        XCTAssertEqual(events(resumed.outputs, to: 3), [.watch(type: .created, path: "/d"),
                                                         .watch(type: .dataChanged, path: "/d")])
        XCTAssertEqual(events(harness.send(.delete(path: "/d", expectedVersion: -1), on: 2).outputs, to: 3),
                       [.watch(type: .deleted, path: "/d")], "still registered after the resume")
    }

    func testBoundedByTheSessionWatchLimit() {
        let harness = EngineHarness { $0.limits.watchesPerSessionMax = 1 }
        harness.openSession(1)
        XCTAssertEqual(harness.call(.addWatch(path: "/a", mode: .persistent), on: 1), .success(.empty))
        XCTAssertEqual(errorCode(harness.call(.addWatch(path: "/a", mode: .recursive), on: 1)), .tooManyWatches)
        XCTAssertEqual(errorCode(harness.call(.get(path: "/", watch: true), on: 1)), .tooManyWatches)
        XCTAssertEqual(errorCode(harness.call(.addWatch(path: "bad", mode: .recursive), on: 1)), .invalidPath)
        XCTAssertEqual(harness.call(.removeWatches(path: "/a", mode: .persistent), on: 1), .success(.empty))
        XCTAssertEqual(harness.call(.addWatch(path: "/a", mode: .recursive), on: 1), .success(.empty), "the slot is free again")
    }

    func testRefusedByNameOverABackend() {
        let harness = EngineHarness()
        harness.engine.useBackend(RefusingBackend())
        harness.openSession(1)
        XCTAssertEqual(errorCode(harness.call(.addWatch(path: "/a", mode: .persistent), on: 1)), .unsupportedByStore)
        XCTAssertEqual(errorCode(harness.call(.removeWatches(path: "/a", mode: .persistent), on: 1)), .unsupportedByStore)
    }
}

/// A backend that is never reached: the requests under test are refused before it.
private final class RefusingBackend: NamespaceBackend {
    var storeDescription: String { "refusing://" }
    var lockNamespace: LockNamespace { preconditionFailure("not used") }
    func perform(_ request: Request, session: UInt64, watch: ((WatchEventType, String) -> Void)?,
                 completion: @escaping (Result<ReplyBody, ReplyError>) -> Void) {
        XCTFail("\(request.opcode) reached the backend")
        completion(.failure(ReplyError(.internalError)))
    }
    func sessionEnded(_ session: UInt64) {}
}
