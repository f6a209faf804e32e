import BatonProtocol
import XCTest

/// The values the spec says each golden frame stands for. Every vector has an entry here and every
/// entry has a vector, so a frame cannot be added or dropped on one side only.
enum GoldenValues {
    static let secret = SessionSecret(high: 0x1112_1314_1516_1718, low: 0x2122_2324_2526_2728)
    static let sessionID: UInt64 = 0x0102_0304_0506_0708

    /// The 65-byte stat of Proto/vectors/README.md.
    static let stat = Stat(createdTransaction: 5, modifiedTransaction: 6, childrenTransaction: 7,
                           createdMilliseconds: 1_700_000_000_000, modifiedMilliseconds: 1_700_000_001_000,
                           version: 2, childrenVersion: 1, ephemeralOwner: 0xab, dataLength: 2, childrenCount: 0,
                           kind: .ephemeral)

    static let requests: [String: (requestID: UInt32, request: Request)] = [
        "hello": (1, .hello(version: 1, clientName: "orders")),
        "hello.empty-name": (UInt32.max, .hello(version: 1, clientName: "")),
        "openSession": (2, .openSession(timeoutMilliseconds: 10_000, flags: .keepOnDisconnect)),
        "openSession.defaults": (2, .openSession(timeoutMilliseconds: 0, flags: [])),
        "openSession.resumedEvents": (2, .openSession(timeoutMilliseconds: 10_000, flags: [.keepOnDisconnect, .resumedEvents])),
        "resumeSession": (3, .resumeSession(sessionID: sessionID, secret: secret)),
        "closeSession": (4, .closeSession),
        "ping": (5, .ping),
        "authenticate": (0x17, .authenticate(token: Array("secret".utf8))),
        "create": (6, .create(path: "/locks/a", data: Array("hi".utf8), mode: .ephemeralSequential)),
        "create.container": (7, .create(path: "/c", data: [], mode: .container)),
        "create.persistent-sequential": (7, .create(path: "/p", data: [], mode: .persistentSequential)),
        "delete": (8, .delete(path: "/a", expectedVersion: anyVersion)),
        "exists": (9, .exists(path: "/a", watch: true)),
        "get": (10, .get(path: "/a", watch: false)),
        "set": (11, .set(path: "/a", data: [0x00, 0xff], expectedVersion: 7)),
        "children": (12, .children(path: "/", watch: true, after: "a", limit: 100)),
        "check": (13, .check(path: "/a", expectedVersion: 0)),
        "multi": (14, .multi([
            .create(path: "/m", data: [], mode: .persistent),
            .delete(path: "/a", expectedVersion: 3),
            .set(path: "/b", data: Array("x".utf8), expectedVersion: anyVersion),
            .check(path: "/c", expectedVersion: 2),
        ])),
        "multi.empty": (15, .multi([])),
        "acquire": (16, .acquire(LockRequest(path: "/locks/a"))),
        "acquire.semaphore-try": (17, .acquire(LockRequest(path: "/s", kind: .semaphore, permits: 3,
                                                           waitMilliseconds: 0, leaseMilliseconds: 30_000))),
        "acquire.shared": (18, .acquire(LockRequest(path: "/r", kind: .shared, permits: 1,
                                                    waitMilliseconds: 5_000, leaseMilliseconds: 0))),
        "release": (19, .release(node: "/l/0000000007", token: 7)),
        "cancel": (20, .cancel(acquireRequestID: 16)),
        "checkToken": (21, .checkToken(path: "/l", token: 7)),
        "inspect": (22, .inspect(path: "/l")),
        "acquireOwned": (0x18, .acquire(LockRequest(path: "/locks/a", owner: "t1"))),
        "acquireOwned.revocable": (0x1a, .acquire(LockRequest(path: "/r", kind: .shared, waitMilliseconds: 5_000,
                                                              leaseMilliseconds: 30_000, owner: "t1", revocable: true,
                                                              lockDelayMilliseconds: 5_000))),
        "requestRevocation": (0x1b, .requestRevocation(path: "/l")),
        "forceRelease": (0x1c, .forceRelease(path: "/l", sessionID: 0x0102_0304_0506_0708)),
        "acquireAll": (0x1c, .acquireAll(locks: [LockSetMember(path: "/a"), LockSetMember(path: "/b", kind: .shared)],
                                         waitMilliseconds: 5_000, leaseMilliseconds: 0)),
        "renew": (0x19, .renew(node: "/l/0000000007", token: 7, leaseMilliseconds: 30_000)),
        "backup": (0x18, .backup(file: "/b.bak")),
        "addWatch": (0x1c, .addWatch(path: "/a/b", mode: .recursive)),
        "removeWatches": (0x1d, .removeWatches(path: "/a", mode: .persistent)),
    ]

    static func ok(_ requestID: UInt32, _ opcode: Opcode, _ body: ReplyBody) -> ServerMessage {
        .reply(Reply(requestID: requestID, opcode: opcode, result: .success(body)))
    }
    static func failed(_ requestID: UInt32, _ opcode: Opcode, _ code: ErrorCode, _ message: String) -> ServerMessage {
        .reply(Reply(requestID: requestID, opcode: opcode, result: .failure(ReplyError(code, message))))
    }

    static let replies: [String: ServerMessage] = [
        "hello": ok(1, .hello, .hello(version: 1, serverName: "batond", frameBytesMax: 1_114_112)),
        "session": ok(2, .openSession, .session(sessionID: sessionID, secret: secret, timeoutMilliseconds: 10_000)),
        "resumed": ok(3, .resumeSession, .resumed(timeoutMilliseconds: 10_000)),
        "empty.closeSession": ok(4, .closeSession, .empty),
        "empty.ping": ok(5, .ping, .empty),
        "empty.authenticate": ok(0x17, .authenticate, .empty),
        "empty.delete": ok(8, .delete, .empty),
        "empty.check": ok(13, .check, .empty),
        "empty.release": ok(19, .release, .empty),
        "empty.cancel": ok(20, .cancel, .empty),
        "empty.renew": ok(0x19, .renew, .empty),
        "held": ok(0x18, .acquireOwned, .held(node: "/l/0000000007", token: 7, holdCount: 2)),
        "error.lockHeldBySession": failed(16, .acquire, .lockHeldBySession, ""),
        "error.deadlock": failed(16, .acquire, .deadlock, "cycle"),
        "error.noLease": failed(0x19, .renew, .noLease, ""),
        "empty.addWatch": ok(0x1c, .addWatch, .empty),
        "empty.removeWatches": ok(0x1d, .removeWatches, .empty),
        "error.noWatch": failed(0x1d, .removeWatches, .noWatch, ""),
        "error.unsupportedByStore": failed(0x1c, .addWatch, .unsupportedByStore, ""),
        "created": ok(6, .create, .created(path: "/locks/a0000000001", stat: stat)),
        "exists.present": ok(9, .exists, .exists(stat)),
        "exists.absent": ok(9, .exists, .exists(nil)),
        "data": ok(10, .get, .data(stat: stat, data: Array("hi".utf8))),
        "stat": ok(11, .set, .stat(stat)),
        "children": ok(12, .children, .children(stat: stat, names: ["a", "locks"], more: true)),
        "multi": ok(14, .multi, .multi([.created(path: "/m", stat: stat), .deleted, .set(stat), .checked])),
        "granted": ok(16, .acquire, .granted(node: "/l/0000000007", token: 7)),
        "tokenStatus": ok(21, .checkToken, .tokenStatus(current: true)),
        "revocation": ok(0x1b, .requestRevocation, .revocation(holdersAsked: 2)),
        "forceReleased": ok(0x1c, .forceRelease, .forceReleased(ended: 1)),
        "grantedAll": ok(0x1c, .acquireAll, .grantedAll([LockSetHold(node: "/a/0000000007", token: 7),
                                                         LockSetHold(node: "/b/0000000003", token: 3)])),
        "lockEntries": ok(22, .inspect, .lockEntries([
            LockEntry(node: "/l/0000000007", kind: .exclusive, position: .holder, sessionID: sessionID,
                      clientName: "orders", token: 7, ageMilliseconds: 1_500),
            LockEntry(node: "/l/0000000008", kind: .exclusive, position: .waiter, sessionID: 9,
                      clientName: "", token: 8, ageMilliseconds: 0),
        ])),
        "lockEntries.empty": ok(23, .inspect, .lockEntries([])),
        "backedUp": ok(0x18, .backup, .backedUp(lsn: 42, bytes: 4_096)),
        "error.noNode": failed(10, .get, .noNode, "no node"),
        "error.lockBusy": failed(17, .acquire, .lockBusy, ""),
        "error.lockCancelled": failed(16, .acquire, .lockCancelled, ""),
        "error.unsupportedVersion": failed(1, .hello, .unsupportedVersion, "speaks 1"),
        "error.notAuthorized": failed(0x17, .authenticate, .notAuthorized, "wrong token"),
        "error.permissionDenied": failed(0x0b, .set, .permissionDenied, "write on /a"),
        "error.unattributed": .reply(DecodeFailure(.malformedFrame, "short").reply),
    ]

    static let events: [String: Event] = [
        "watch.created": .watch(type: .created, path: "/a"),
        "watch.deleted": .watch(type: .deleted, path: "/a"),
        "watch.dataChanged": .watch(type: .dataChanged, path: "/a"),
        "watch.childrenChanged": .watch(type: .childrenChanged, path: "/"),
        "lockLost.sessionExpired": .lockLost(node: "/l/0000000007", token: 7, reason: .sessionExpired),
        "lockLost.leaseExpired": .lockLost(node: "/l/0000000007", token: 7, reason: .leaseExpired),
        "lockLost.nodeDeleted": .lockLost(node: "/l/0000000007", token: 7, reason: .nodeDeleted),
        "lockLost.backendSessionLost": .lockLost(node: "/l/0000000007", token: 7, reason: .backendSessionLost),
        "lockSuspended": .lockSuspended(node: "/l/0000000007", token: 7),
        "sessionExpired": .sessionExpired(sessionID: sessionID),
        "revocationRequested": .revocationRequested(node: "/l/0000000007", token: 7, requester: 9),
        "lockResumed": .lockResumed(node: "/l/0000000007", token: 7),
    ]

    /// Frames a server must refuse: the code, and the request id the failure carries.
    static let malformed: [String: (code: ErrorCode, requestID: UInt32?)] = [
        "short-header": (.malformedFrame, nil),
        "unknown-opcode": (.unknownOpcode, 0x2a),
        "trailing-byte": (.malformedFrame, 5),
        "bad-magic": (.malformedFrame, 1),
        "create-ephemeral-container": (.malformedFrame, 7),
        "create-reserved-flag": (.malformedFrame, 7),
        "session-reserved-flag": (.malformedFrame, 2),
        "bad-bool": (.malformedFrame, 9),
        "unknown-lock-kind": (.malformedFrame, 0x11),
        "empty-owner": (.malformedFrame, 0x18),
        "acquire-reserved-flag": (.malformedFrame, 0x18),
        "path-not-utf8": (.invalidPath, 0x0a),
        "name-not-utf8": (.malformedFrame, 1),
        "multi-forbidden-opcode": (.malformedFrame, 0x0e),
        "path-overruns-frame": (.malformedFrame, 0x0a),
        "data-overruns-frame": (.malformedFrame, 0x0b),
        "unknown-watch-mode": (.malformedFrame, 0x1c),
    ]
}

/// A name per reply body case: the switch is exhaustive, so a new case must be named (and covered).
func bodyKind(_ body: ReplyBody) -> String {
    switch body {
    case .hello: "hello"
    case .session: "session"
    case .resumed: "resumed"
    case .empty: "empty"
    case .created: "created"
    case .exists: "exists"
    case .data: "data"
    case .stat: "stat"
    case .children: "children"
    case .multi: "multi"
    case .granted: "granted"
    case .held: "held"
    case .tokenStatus: "tokenStatus"
    case .revocation: "revocation"
    case .forceReleased: "forceReleased"
    case .lockEntries: "lockEntries"
    case .backedUp: "backedUp"
    case .grantedAll: "grantedAll"
    }
}
let allBodyKinds: Set<String> = ["hello", "session", "resumed", "empty", "created", "exists", "data", "stat",
                                 "children", "multi", "granted", "held", "tokenStatus", "revocation", "forceReleased",
                                 "lockEntries", "backedUp",
                                 "grantedAll"]

final class GoldenVectorTests: XCTestCase {
    func testRequestVectorsDecodeAndReencodeByteForByte() throws {
        let entries = try VectorFile.load("requests.hex")
        XCTAssertEqual(Set(entries.map(\.name)), Set(GoldenValues.requests.keys), "vectors and expected values differ")
        for entry in entries {
            guard let expected = GoldenValues.requests[entry.name], let body = VectorFile.body(of: entry) else { continue }
            do {
                let decoded = try decodeRequestBothWays(body)
                XCTAssertEqual(decoded.requestID, expected.requestID, entry.name)
                XCTAssertEqual(decoded.request, expected.request, entry.name)
            } catch {
                XCTFail("\(entry.name): \(error)")
            }
            let encoded = Codec.encodeRequest(expected.request, requestID: expected.requestID)
            XCTAssertEqual(hex(encoded), hex(entry.bytes), "\(entry.name) re-encodes differently")
        }
    }

    func testEveryOpcodeHasARequestVector() {
        let covered = Set(GoldenValues.requests.values.map(\.request.opcode))
        XCTAssertEqual(covered, Set(Opcode.allCases))
    }

    func testReplyVectorsDecodeAndReencodeByteForByte() throws {
        let entries = try VectorFile.load("replies.hex")
        XCTAssertEqual(Set(entries.map(\.name)), Set(GoldenValues.replies.keys), "vectors and expected values differ")
        for entry in entries {
            guard let expected = GoldenValues.replies[entry.name], let body = VectorFile.body(of: entry) else { continue }
            XCTAssertEqual(try Codec.decodeServerMessage(body), expected, entry.name)
            XCTAssertEqual(hex(Codec.encode(expected)), hex(entry.bytes), "\(entry.name) re-encodes differently")
        }
    }

    func testEveryReplyBodyKindAndAnErrorHaveVectors() {
        var kinds = Set<String>()
        var errors = 0
        for message in GoldenValues.replies.values {
            guard case .reply(let reply) = message else { continue }
            switch reply.result {
            case .success(let body): kinds.insert(bodyKind(body))
            case .failure: errors += 1
            }
        }
        XCTAssertEqual(kinds, allBodyKinds)
        XCTAssertGreaterThan(errors, 0)
    }

    func testEventVectorsDecodeAndReencodeByteForByte() throws {
        let entries = try VectorFile.load("events.hex")
        XCTAssertEqual(Set(entries.map(\.name)), Set(GoldenValues.events.keys), "vectors and expected values differ")
        for entry in entries {
            guard let expected = GoldenValues.events[entry.name], let body = VectorFile.body(of: entry) else { continue }
            XCTAssertEqual(try Codec.decodeServerMessage(body), .event(expected), entry.name)
            XCTAssertEqual(hex(Codec.encode(.event(expected))), hex(entry.bytes), "\(entry.name) re-encodes differently")
        }
    }

    func testEveryEventKindHasAVector() {
        var kinds = Set<EventKind>()
        var reasons = Set<UInt8>()
        var watchTypes = Set<UInt8>()
        for event in GoldenValues.events.values {
            switch event {
            case .watch(let type, _):
                kinds.insert(.watch)
                watchTypes.insert(type.rawValue)
            case .lockLost(_, _, let reason):
                kinds.insert(.lockLost)
                reasons.insert(reason.rawValue)
            case .lockSuspended: kinds.insert(.lockSuspended)
            case .sessionExpired: kinds.insert(.sessionExpired)
            case .revocationRequested: kinds.insert(.revocationRequested)
            case .lockResumed: kinds.insert(.lockResumed)
            }
        }
        XCTAssertEqual(kinds, Set(EventKind.allCases))
        XCTAssertEqual(reasons, [1, 2, 3, 4])
        XCTAssertEqual(watchTypes, [1, 2, 3, 4])
    }

    func testMalformedVectorsFailWithTheirNamedError() throws {
        let entries = try VectorFile.load("malformed.hex")
        XCTAssertEqual(Set(entries.map(\.name)), Set(GoldenValues.malformed.keys), "vectors and expected values differ")
        for entry in entries {
            guard let expected = GoldenValues.malformed[entry.name], let body = VectorFile.body(of: entry) else { continue }
            do {
                let decoded = try decodeRequestBothWays(body)
                XCTFail("\(entry.name) decoded to \(decoded)")
            } catch {
                XCTAssertEqual(error.code, expected.code, entry.name)
                XCTAssertEqual(error.requestID, expected.requestID, entry.name)
            }
        }
    }

    /// The unattributed error vector is exactly what a server sends for the short-header vector.
    func testUnattributableFailureRepliesWithRequestIDZeroAndHello() throws {
        let entries = try VectorFile.load("malformed.hex")
        let short = try XCTUnwrap(entries.first { $0.name == "short-header" })
        let body = try XCTUnwrap(VectorFile.body(of: short))
        XCTAssertThrowsError(try decodeRequestBothWays(body)) { error in
            let reply = (error as! DecodeFailure).reply
            XCTAssertEqual(reply.requestID, 0)
            XCTAssertEqual(reply.opcode, .hello)
            XCTAssertEqual(reply.result, .failure(ReplyError(.malformedFrame, (error as! DecodeFailure).message)))
        }
    }

    func testFailureWithKnownOpcodeEchoesItInTheReply() {
        let body: [UInt8] = [0x13, 0, 0, 0, 0x0a, 0, 2, 0x2f, 0xff, 0]  // get "/\u{ff}": not UTF-8
        XCTAssertThrowsError(try decodeRequestBothWays(body)) { error in
            let reply = (error as! DecodeFailure).reply
            XCTAssertEqual(reply.requestID, 0x0a)
            XCTAssertEqual(reply.opcode, .get)
            guard case .failure(let replyError) = reply.result else { return XCTFail("not a failure") }
            XCTAssertEqual(replyError.code, .invalidPath)
        }
        let unknown: [UInt8] = [0x7f, 0, 0, 0, 0x2a]
        XCTAssertThrowsError(try decodeRequestBothWays(unknown)) { error in
            let reply = (error as! DecodeFailure).reply
            XCTAssertEqual(reply.requestID, 0x2a)
            XCTAssertEqual(reply.opcode, .hello, "an unknown opcode cannot be echoed")
        }
    }

    func testStatIsSixtyFiveBytes() {
        var writer = WireWriter()
        Codec.encodeStat(GoldenValues.stat, into: &writer)
        XCTAssertEqual(writer.bytes.count, 65)
        XCTAssertEqual(Stat.wireBytes, 65)
        XCTAssertEqual(hex(writer.bytes),
                       "0000000000000005" + "0000000000000006" + "0000000000000007" + "0000018bcfe56800"
                       + "0000018bcfe56be8" + "00000002" + "00000001" + "00000000000000ab" + "00000002" + "00000000" + "01")
    }
}
