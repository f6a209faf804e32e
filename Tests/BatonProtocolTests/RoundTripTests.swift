import Foundation
import BatonProtocol
import XCTest

/// Every request and server message survives encode -> frame split -> decode, with edge values.
final class RoundTripTests: XCTestCase {
    static let longPath = "/" + String(repeating: "p", count: Limits.default.pathBytesMax - 1)
    static let unicodePath = "/locks/café/日本/🔒"
    static let largeData = (0..<Limits.default.dataBytesMax).map { UInt8(truncatingIfNeeded: $0 &* 31) }

    static let extremeStat = Stat(createdTransaction: .max, modifiedTransaction: 0, childrenTransaction: .max,
                                  createdMilliseconds: .max, modifiedMilliseconds: 1, version: .max,
                                  childrenVersion: .min, ephemeralOwner: .max, dataLength: .max,
                                  childrenCount: .max, kind: .container)

    static let requests: [Request] = [
        .hello(version: 0, clientName: ""),
        .hello(version: .max, clientName: String(repeating: "n", count: Limits.default.clientNameBytesMax)),
        .openSession(timeoutMilliseconds: 0, flags: []),
        .openSession(timeoutMilliseconds: .max, flags: .keepOnDisconnect),
        .resumeSession(sessionID: 0, secret: SessionSecret(high: 0, low: 0)),
        .resumeSession(sessionID: .max, secret: SessionSecret(high: .max, low: .max)),
        .closeSession,
        .ping,
        .authenticate(token: []),
        .authenticate(token: (0...255).map(UInt8.init)),
        .create(path: "", data: [], mode: .persistent),
        .create(path: longPath, data: largeData, mode: .ephemeralSequential),
        .create(path: unicodePath, data: [0], mode: .container),
        .create(path: "/x", data: [0xff], mode: CreateMode(kind: .container, sequential: true)),
        .create(path: "/x", data: [], mode: .persistentSequential),
        .create(path: "/x", data: [], mode: .ephemeral),
        .delete(path: "/", expectedVersion: .min),
        .delete(path: unicodePath, expectedVersion: .max),
        .exists(path: "/", watch: false),
        .exists(path: longPath, watch: true),
        .get(path: unicodePath, watch: true),
        .get(path: "", watch: false),
        .set(path: "/a", data: [], expectedVersion: anyVersion),
        .set(path: "/a", data: largeData, expectedVersion: 0),
        .children(path: "/", watch: true),
        .children(path: "/big", watch: false, after: "n0000004999", limit: 1_000),
        .check(path: "/a", expectedVersion: -2),
        .multi([]),
        .multi([
            .create(path: unicodePath, data: [1, 2, 3], mode: .ephemeralSequential),
            .delete(path: "/d", expectedVersion: anyVersion),
            .set(path: "/s", data: [], expectedVersion: .max),
            .check(path: "", expectedVersion: .min),
        ]),
        .multi(Array(repeating: .check(path: "/c", expectedVersion: 1), count: Limits.default.multiOperationsMax)),
        .acquire(LockRequest(path: "/l")),
        .acquire(LockRequest(path: unicodePath, kind: .shared, permits: 1, waitMilliseconds: 0, leaseMilliseconds: .max)),
        .acquire(LockRequest(path: "/s", kind: .semaphore, permits: .max, waitMilliseconds: .max - 1,
                             leaseMilliseconds: 1)),
        .release(node: "", token: 0),
        .release(node: longPath, token: .max),
        .cancel(acquireRequestID: 0),
        .cancel(acquireRequestID: .max),
        .checkToken(path: "/l", token: 0),
        .checkToken(path: "/l", token: .max),
        .inspect(path: "/"),
        .acquire(LockRequest(path: "/l", owner: "thread-1")),
        .acquire(LockRequest(path: unicodePath, kind: .shared, waitMilliseconds: 0, owner: "ü")),
        .renew(node: "/l/0000000001", token: .max, leaseMilliseconds: 1),
        .requestRevocation(path: "/l"),
        .forceRelease(path: "/l", sessionID: 0),
        .forceRelease(path: "/l", sessionID: .max),
        .acquireAll(locks: [LockSetMember(path: "/a"), LockSetMember(path: "/s", kind: .semaphore, permits: 3)],
                    waitMilliseconds: LockRequest.waitForever, leaseMilliseconds: 1_000),
        .acquireAll(locks: [], waitMilliseconds: 0, leaseMilliseconds: 0),
        .acquire(LockRequest(path: "/l", owner: "o", revocable: true)),
        .acquire(LockRequest(path: "/l", owner: "o", lockDelayMilliseconds: .max)),
        .addWatch(path: "/", mode: .recursive),
        .addWatch(path: unicodePath, mode: .persistent),
        .removeWatches(path: longPath, mode: .recursive),
        .backup(file: ""),
        .backup(file: "/var/lib/baton-backups/été.bak"),
    ]

    static let replies: [(Opcode, ReplyBody)] = [
        (.hello, .hello(version: 1, serverName: "", frameBytesMax: .max)),
        (.hello, .hello(version: .max, serverName: "batond ✓", frameBytesMax: 0)),
        (.openSession, .session(sessionID: .max, secret: SessionSecret(high: .max, low: 0), timeoutMilliseconds: .max)),
        (.resumeSession, .resumed(timeoutMilliseconds: 0)),
        (.closeSession, .empty), (.ping, .empty), (.delete, .empty), (.check, .empty), (.release, .empty),
        (.cancel, .empty), (.addWatch, .empty), (.removeWatches, .empty),
        (.create, .created(path: "", stat: Stat())),
        (.create, .created(path: longPath, stat: extremeStat)),
        (.exists, .exists(nil)),
        (.exists, .exists(extremeStat)),
        (.get, .data(stat: Stat(), data: [])),
        (.get, .data(stat: extremeStat, data: largeData)),
        (.set, .stat(extremeStat)),
        (.children, .children(stat: Stat(), names: [])),
        (.children, .children(stat: Stat(), names: ["a"], more: true)),
        (.children, .children(stat: extremeStat, names: ["", "a", unicodePath, String(repeating: "z", count: 300)])),
        (.children, .children(stat: Stat(), names: (0..<5_000).map { String(format: "n%010d", $0) })),
        (.multi, .multi([])),
        (.multi, .multi([.created(path: unicodePath, stat: extremeStat), .deleted, .set(Stat()), .checked, .deleted])),
        (.acquire, .granted(node: "", token: 0)),
        (.acquire, .granted(node: longPath, token: .max)),
        (.acquireOwned, .held(node: "/l/x", token: .max, holdCount: .max)),
        (.requestRevocation, .revocation(holdersAsked: 0)),
        (.acquireAll, .grantedAll([LockSetHold(node: "/a/0000000001", token: 1)])),
        (.acquireAll, .grantedAll([])),
        (.requestRevocation, .revocation(holdersAsked: .max)),
        (.forceRelease, .forceReleased(ended: 0)),
        (.forceRelease, .forceReleased(ended: .max)),
        (.checkToken, .tokenStatus(current: false)),
        (.checkToken, .tokenStatus(current: true)),
        (.inspect, .lockEntries([])),
        (.inspect, .lockEntries([
            LockEntry(node: "", kind: .semaphore, position: .waiter, sessionID: 0, clientName: "", token: 0,
                      ageMilliseconds: 0),
            LockEntry(node: unicodePath, kind: .shared, position: .holder, sessionID: .max, clientName: "ü",
                      token: .max, ageMilliseconds: .max),
        ])),
        (.backup, .backedUp(lsn: 0, bytes: 0)),
        (.backup, .backedUp(lsn: .max, bytes: .max)),
    ]

    static let events: [Event] = [
        .watch(type: .created, path: ""),
        .watch(type: .deleted, path: longPath),
        .watch(type: .dataChanged, path: unicodePath),
        .watch(type: .childrenChanged, path: "/"),
        .lockLost(node: "", token: 0, reason: .sessionExpired),
        .lockLost(node: unicodePath, token: .max, reason: .leaseExpired),
        .lockLost(node: "/l/1", token: 1, reason: .nodeDeleted),
        .lockLost(node: "/l/1", token: 1, reason: .backendSessionLost),
        .lockSuspended(node: "", token: .max),
        .sessionExpired(sessionID: 0),
        .sessionExpired(sessionID: .max),
    ]

    /// Every failure code except `ok`, with empty, ASCII and multi-byte messages.
    static var errorReplies: [ServerMessage] {
        ErrorCode.allCases.filter { $0 != .ok }.enumerated().map { index, code in
            let message = ["", "detail", "détail ✗"][index % 3]
            return .reply(Reply(requestID: UInt32(index), opcode: Opcode.allCases[index % Opcode.allCases.count],
                                result: .failure(ReplyError(code, message))))
        }
    }

    func testEveryOpcodeIsExercised() {
        XCTAssertEqual(Set(Self.requests.map(\.opcode)), Set(Opcode.allCases))
        XCTAssertEqual(Set(Self.replies.map { bodyKind($0.1) }), allBodyKinds)
    }

    func testRequestsRoundTrip() throws {
        let requestIDs: [UInt32] = [0, 1, 0x8000_0000, .max]
        for (index, request) in Self.requests.enumerated() {
            let requestID = requestIDs[index % requestIDs.count]
            let frame = Codec.encodeRequest(request, requestID: requestID)
            var accumulator = FrameAccumulator(frameBytesMax: Limits.default.frameBytesMax)
            accumulator.append(frame)
            let body = try XCTUnwrap(try accumulator.nextBody(), "\(request.opcode)")
            XCTAssertEqual(body.count + 4, frame.count)
            let decoded = try decodeRequestBothWays(body)
            XCTAssertEqual(decoded.requestID, requestID)
            XCTAssertEqual(decoded.request, request)
            XCTAssertNil(try accumulator.nextBody())
        }
    }

    func testDecodingHonoursStartAndEnd() throws {
        let frame = Codec.encodeRequest(.get(path: "/a", watch: true), requestID: 9)
        let padded = [0xee, 0xee, 0xee] + frame + [0xdd, 0xdd]
        let decoded = try Codec.decodeRequest(padded, from: 3 + 4, to: 3 + frame.count)
        XCTAssertEqual(decoded.requestID, 9)
        XCTAssertEqual(decoded.request, .get(path: "/a", watch: true))

        let event = Codec.encode(.event(.sessionExpired(sessionID: 3)))
        let paddedEvent = [0xee] + event + [0xdd]
        XCTAssertEqual(try Codec.decodeServerMessage(paddedEvent, from: 1 + 4, to: 1 + event.count),
                       .event(.sessionExpired(sessionID: 3)))
    }

    func testLargestRequestsFitTheFrameLimit() {
        let create = Codec.encodeRequest(.create(path: Self.longPath, data: Self.largeData, mode: .ephemeral), requestID: 1)
        let set = Codec.encodeRequest(.set(path: Self.longPath, data: Self.largeData, expectedVersion: 1), requestID: 1)
        XCTAssertLessThanOrEqual(create.count - 4, Limits.default.frameBytesMax)
        XCTAssertLessThanOrEqual(set.count - 4, Limits.default.frameBytesMax)
    }

    func testRepliesRoundTrip() throws {
        for (index, (opcode, body)) in Self.replies.enumerated() {
            let message = ServerMessage.reply(Reply(requestID: UInt32.max - UInt32(index), opcode: opcode,
                                                    result: .success(body)))
            try assertRoundTrip(message)
        }
        for message in Self.errorReplies { try assertRoundTrip(message) }
    }

    func testEventsRoundTrip() throws {
        for event in Self.events { try assertRoundTrip(.event(event)) }
    }

    func testLongErrorMessagesAreCutAtACharacterBoundary() throws {
        // 1 023 ASCII bytes then a 4-byte scalar: the cut must drop the scalar, not split it.
        let message = String(repeating: "a", count: Codec.errorMessageBytesMax - 1) + "🔒" + "tail"
        let frame = Codec.encode(.reply(Reply(requestID: 1, opcode: .get, result: .failure(ReplyError(.noNode, message)))))
        let decoded = try Codec.decodeServerMessage(Array(frame[4...]))
        guard case .reply(let reply) = decoded, case .failure(let error) = reply.result else {
            return XCTFail("not an error reply: \(decoded)")
        }
        XCTAssertEqual(error.code, .noNode)
        XCTAssertEqual(error.message, String(repeating: "a", count: Codec.errorMessageBytesMax - 1))

        let exact = String(repeating: "é", count: Codec.errorMessageBytesMax / 2)
        let exactFrame = Codec.encode(.reply(Reply(requestID: 1, opcode: .get, result: .failure(ReplyError(.noNode, exact)))))
        XCTAssertEqual(try Codec.decodeServerMessage(Array(exactFrame[4...])),
                       .reply(Reply(requestID: 1, opcode: .get, result: .failure(ReplyError(.noNode, exact)))))
    }

    private func assertRoundTrip(_ message: ServerMessage, file: StaticString = #filePath, line: UInt = #line) throws {
        let frame = Codec.encode(message)
        let length = frame[0..<4].reduce(0) { $0 << 8 | Int($1) }
        XCTAssertEqual(length, frame.count - 4, file: file, line: line)
        XCTAssertEqual(try Codec.decodeServerMessage(Array(frame[4...])), message, file: file, line: line)
    }
}
