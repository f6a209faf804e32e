@testable import BatonEngine
import BatonProtocol
import XCTest

final class EngineHandshakeTests: XCTestCase {
    func testHelloReplyCarriesServerNameAndFrameLimit() {
        let harness = EngineHarness()
        XCTAssertTrue(harness.engine.connectionOpened(1, transport: .unix, now: harness.now))
        let result = harness.call(.hello(version: ProtocolVersion.current, clientName: "me"), on: 1)
        XCTAssertEqual(result, .success(.hello(version: ProtocolVersion.current, serverName: "test-batond",
                                               frameBytesMax: UInt32(Limits.default.frameBytesMax))))
    }

    func testFirstRequestMustBeHello() {
        let harness = EngineHarness()
        _ = harness.engine.connectionOpened(1, transport: .unix, now: harness.now)
        let (requestID, outputs) = harness.send(.ping, on: 1)
        XCTAssertEqual(outputs, [
            .send(1, .reply(Reply(requestID: requestID, opcode: .ping,
                                  result: .failure(ReplyError(.handshakeRequired, "the first request must be hello"))))),
            .close(1),
        ])
        // Later frames of the closed connection are dropped.
        XCTAssertEqual(harness.send(.hello(version: ProtocolVersion.current, clientName: ""), on: 1).outputs, [])
        XCTAssertEqual(harness.engine.connectionCount, 0)
        harness.engine.connectionClosed(1, now: harness.now)
        XCTAssertEqual(harness.engine.takeOutputs(), [])
    }

    func testUnsupportedVersionCloses() {
        let harness = EngineHarness()
        _ = harness.engine.connectionOpened(1, transport: .tcp, now: harness.now)
        let (_, outputs) = harness.send(.hello(version: ProtocolVersion.current + 1, clientName: "future"), on: 1)
        XCTAssertEqual(replies(outputs, to: 1).first?.result.errorCode, .unsupportedVersion)
        XCTAssertEqual(closes(outputs), [1])
    }

    func testOverlongClientNameIsRefusedWithoutClosing() {
        let harness = EngineHarness { $0.limits.clientNameBytesMax = 4 }
        _ = harness.engine.connectionOpened(1, transport: .unix, now: harness.now)
        XCTAssertEqual(errorCode(harness.call(.hello(version: ProtocolVersion.current, clientName: "toolong"), on: 1)),
                       .invalidArgument)
        if case .success(.hello) = harness.call(.hello(version: ProtocolVersion.current, clientName: "ok"), on: 1) {} else {
            XCTFail("a second, valid hello is accepted")
        }
    }

    func testSecondHelloIsAnError() {
        let harness = EngineHarness()
        harness.connect(1)
        XCTAssertEqual(errorCode(harness.call(.hello(version: ProtocolVersion.current, clientName: "x"), on: 1)),
                       .invalidArgument)
    }

    func testNamespaceAndLockRequestsNeedASession() {
        let harness = EngineHarness()
        harness.connect(1)
        let requests: [Request] = [
            .create(path: "/a", data: [], mode: .persistent), .get(path: "/", watch: false),
            .exists(path: "/", watch: true), .children(path: "/", watch: false), .set(path: "/", data: [], expectedVersion: -1),
            .delete(path: "/a", expectedVersion: -1), .check(path: "/", expectedVersion: -1), .multi([]),
            .closeSession, .acquire(LockRequest(path: "/l")), .inspect(path: "/l"),
        ]
        for request in requests {
            let (_, outputs) = harness.send(request, on: 1)
            XCTAssertEqual(replies(outputs, to: 1).first?.result.errorCode, .sessionRequired, "\(request.opcode)")
            XCTAssertEqual(closes(outputs), [], "the connection stays open")
        }
        XCTAssertEqual(harness.call(.ping, on: 1), .success(.empty))
    }

    func testDecodeFailures() {
        let harness = EngineHarness()
        // Before hello: any failure closes.
        _ = harness.engine.connectionOpened(1, transport: .unix, now: harness.now)
        harness.engine.decodeFailed(DecodeFailure(.invalidPath, "bad", requestID: 5, opcode: Opcode.get.rawValue),
                                    from: 1, now: harness.now)
        var outputs = harness.engine.takeOutputs()
        XCTAssertEqual(replies(outputs, to: 1).first, Reply(requestID: 5, opcode: .get,
                                                            result: .failure(ReplyError(.handshakeRequired, "bad"))))
        XCTAssertEqual(closes(outputs), [1])

        // After hello: a non-closing error keeps the connection; a closing one ends it and its Unix session.
        let session = harness.openSession(2)
        harness.engine.decodeFailed(DecodeFailure(.invalidPath, "bad path", requestID: 6, opcode: Opcode.get.rawValue),
                                    from: 2, now: harness.now)
        outputs = harness.engine.takeOutputs()
        XCTAssertEqual(replies(outputs, to: 2).first?.result.errorCode, .invalidPath)
        XCTAssertEqual(closes(outputs), [])
        harness.engine.decodeFailed(DecodeFailure(.unknownOpcode, "unknown opcode 0x7f", requestID: 7, opcode: 0x7F),
                                    from: 2, now: harness.now)
        outputs = harness.engine.takeOutputs()
        XCTAssertEqual(replies(outputs, to: 2).first, Reply(requestID: 7, opcode: .hello,
                                                            result: .failure(ReplyError(.unknownOpcode, "unknown opcode 0x7f"))))
        XCTAssertEqual(closes(outputs), [2])
        XCTAssertNil(harness.engine.namespace.session(session.id))
    }

    func testConnectionLimit() {
        let harness = EngineHarness { $0.limits.connectionsMax = 2 }
        XCTAssertTrue(harness.engine.connectionOpened(1, transport: .unix, now: harness.now))
        XCTAssertTrue(harness.engine.connectionOpened(2, transport: .tcp, now: harness.now))
        _ = harness.engine.takeOutputs()
        XCTAssertFalse(harness.engine.connectionOpened(3, transport: .unix, now: harness.now))
        let outputs = harness.engine.takeOutputs()
        XCTAssertEqual(replies(outputs, to: 3).first?.result.errorCode, .tooManyConnections)
        XCTAssertEqual(outputs.last, .close(3))
        harness.engine.connectionClosed(1, now: harness.now)
        XCTAssertTrue(harness.engine.connectionOpened(3, transport: .unix, now: harness.now))
    }

    func testPendingRequestLimitBoundsWaitingAcquiresOnly() {
        let harness = EngineHarness { $0.limits.pendingRequestsPerConnectionMax = 2 }
        harness.openSession(1)
        harness.openSession(2)
        XCTAssertEqual(harness.call(.acquire(LockRequest(path: "/l")), on: 2).isSuccess, true)
        // Owners of one session queue like separate clients (PROTOCOL.md §12.9).
        let first = harness.send(.acquire(LockRequest(path: "/l", owner: "a")), on: 1)
        XCTAssertEqual(replies(first.outputs, to: 1), [], "waits")
        _ = harness.send(.acquire(LockRequest(path: "/l", owner: "b")), on: 1)
        // Two acquires wait: a third is refused, but everything else is still answered, so the
        // client can cancel (PROTOCOL.md §4.3).
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/l", owner: "c")), on: 1)), .tooManyPendingRequests)
        XCTAssertEqual(harness.call(.ping, on: 1), .success(.empty))
        XCTAssertEqual(harness.call(.get(path: "/", watch: false), on: 1).isSuccess, true)
        let cancel = harness.send(.cancel(acquireRequestID: first.requestID), on: 1)
        XCTAssertEqual(replies(cancel.outputs, to: 1).map { errorCode($0.result) }, [.lockCancelled, nil])
        let again = harness.send(.acquire(LockRequest(path: "/l", owner: "d")), on: 1)
        XCTAssertEqual(replies(again.outputs, to: 1), [], "room again: it waits")
    }
}

extension Result where Success == ReplyBody, Failure == ReplyError {
    var errorCode: ErrorCode? { if case .failure(let error) = self { return error.code } else { return nil } }
}
