@testable import BatonEngine
import BatonLocks
import BatonNamespace
import BatonProtocol
import XCTest

/// A backend that answers when the test says, as ZooKeeper answers later.
private final class SlowBackend: NamespaceBackend {
    var storeDescription: String { "slow://" }
    let lockNamespace: LockNamespace = EmptyLockNamespace()
    var pending: [(Result<ReplyBody, ReplyError>) -> Void] = []
    func perform(_ request: Request, session: UInt64, watch: ((WatchEventType, String) -> Void)?,
                 completion: @escaping (Result<ReplyBody, ReplyError>) -> Void) {
        pending.append(completion)
    }
    func sessionEnded(_ session: UInt64) {}
    func answerFirst(_ result: Result<ReplyBody, ReplyError>) { pending.removeFirst()(result) }
}

private final class EmptyLockNamespace: LockNamespace {
    func create(path: String, data: [UInt8], mode: CreateMode, owner: UInt64, completion: @escaping (Result<LockCreatedNode, ReplyError>) -> Void) {
        completion(.failure(ReplyError(.storageFailure)))
    }
    func children(path: String, watch: LockWatch?, completion: @escaping (Result<[String], ReplyError>) -> Void) {
        completion(.failure(ReplyError(.storageFailure)))
    }
    func exists(path: String, watch: LockWatch?, completion: @escaping (Result<Stat?, ReplyError>) -> Void) {
        completion(.failure(ReplyError(.storageFailure)))
    }
    func getData(path: String, completion: @escaping (Result<[UInt8], ReplyError>) -> Void) {
        completion(.failure(ReplyError(.storageFailure)))
    }
    func delete(path: String, expectedVersion: Int32, completion: @escaping (Result<Void, ReplyError>) -> Void) {
        completion(.failure(ReplyError(.storageFailure)))
    }
}

/// Over a backend, a connection's replies still leave in request order (PROTOCOL.md §4.3, §16).
final class EngineBackendOrderTests: XCTestCase {
    func testALaterPingWaitsForAnEarlierNamespaceReply() {
        let harness = EngineHarness()
        let backend = SlowBackend()
        harness.engine.useBackend(backend)
        harness.openSession(1)
        let get = harness.send(.get(path: "/a", watch: false), on: 1)
        let exists = harness.send(.exists(path: "/b", watch: false), on: 1)
        let ping = harness.send(.ping, on: 1)
        XCTAssertTrue(replies(get.outputs + exists.outputs + ping.outputs, to: 1).isEmpty,
                      "the ping waits behind the namespace requests sent before it")
        backend.answerFirst(.success(.data(stat: Stat(), data: [1])))
        harness.engine.backendProgressed(now: harness.now)
        XCTAssertEqual(replies(harness.engine.takeOutputs(), to: 1).map(\.requestID), [get.requestID])
        backend.answerFirst(.failure(ReplyError(.noNode, "/b")))
        harness.engine.backendProgressed(now: harness.now)
        XCTAssertEqual(replies(harness.engine.takeOutputs(), to: 1).map(\.requestID), [exists.requestID, ping.requestID])
        // Nothing at the backend: answered at once again.
        XCTAssertEqual(replies(harness.send(.ping, on: 1).outputs, to: 1).count, 1)
    }
}
