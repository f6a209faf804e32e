import BatonAccess
@testable import BatonEngine
import BatonProtocol
import XCTest

/// The engine consults the access rules for every request (Proto/PROTOCOL.md §17) and serves
/// `forceRelease` (§12.13).
final class EngineAccessTests: XCTestCase {
    private let alice = AccessIdentity(userID: 1001, groupIDs: [1001])
    private let ops = AccessIdentity(userID: 1002, groupIDs: [1002, 500])

    private func policy(_ text: String, hasDefaultToken: Bool = false) throws -> AccessPolicy {
        try AccessFile.parse(text, hasDefaultToken: hasDefaultToken, user: { _ in nil }, group: { _ in nil }).policy
    }

    /// A Unix connection of `identity` with a session.
    private func open(_ harness: EngineHarness, _ connection: ConnectionID, as identity: AccessIdentity) -> UInt64 {
        XCTAssertTrue(harness.engine.connectionOpened(connection, transport: .unix, now: harness.now))
        harness.engine.connectionCredentials(connection, userID: identity.userID!, groupIDs: identity.groupIDs)
        _ = harness.call(.hello(version: ProtocolVersion.current, clientName: "client-\(connection)"), on: connection)
        guard case .success(.session(let id, _, _)) = harness.call(.openSession(timeoutMilliseconds: 0, flags: []),
                                                                   on: connection) else {
            XCTFail("openSession failed")
            return 0
        }
        return id
    }

    func testWithoutRulesEverythingIsAllowedAsBefore() {
        let harness = EngineHarness()
        _ = open(harness, 1, as: alice)
        XCTAssertEqual(errorCode(harness.call(.create(path: "/a", data: [], mode: .persistent), on: 1)), nil)
        XCTAssertEqual(errorCode(harness.call(.delete(path: "/a", expectedVersion: -1), on: 1)), nil)
    }

    func testRulesDecideEachRequestAndADenialIsNamedCountedAndKeptForTheLog() throws {
        let harness = EngineHarness()
        harness.engine.setAccessRules(try policy("/ uid:1001 read\n/alice uid:1001 all\n/ gid:500 all"))
        _ = open(harness, 1, as: alice)
        _ = open(harness, 2, as: ops)
        XCTAssertEqual(errorCode(harness.call(.create(path: "/alice", data: [], mode: .persistent), on: 1)), nil)
        XCTAssertEqual(errorCode(harness.call(.create(path: "/shared", data: [], mode: .persistent), on: 2)), nil)
        let denied = harness.call(.set(path: "/shared", data: [1], expectedVersion: -1), on: 1)
        XCTAssertEqual(errorCode(denied), .permissionDenied)
        guard case .failure(let error) = denied else { return }
        XCTAssertEqual(error.message, "write on /shared is not granted to uid=1001")
        XCTAssertEqual(errorCode(harness.call(.get(path: "/shared", watch: false), on: 1)), nil)
        XCTAssertEqual(errorCode(harness.call(.get(path: "/shared", watch: true), on: 1)), .permissionDenied)
        XCTAssertEqual(errorCode(harness.call(.acquire(LockRequest(path: "/shared", waitMilliseconds: 0)), on: 1)), .permissionDenied)
        // A multi is refused whole, naming its operation.
        let multi = harness.call(.multi([.create(path: "/alice/x", data: [], mode: .persistent),
                                         .delete(path: "/shared", expectedVersion: -1)]), on: 1)
        guard case .failure(let multiError) = multi else { return XCTFail("multi allowed") }
        XCTAssertEqual(multiError.code, .permissionDenied)
        XCTAssertTrue(multiError.message.hasPrefix("operation 1:"), multiError.message)
        XCTAssertNil(harness.engine.namespace.node(at: "/alice/x"))
        XCTAssertNotNil(harness.engine.namespace.node(at: "/shared"))
        XCTAssertEqual(errorCode(harness.call(.backup(file: "/tmp/x"), on: 1)), .permissionDenied)
        XCTAssertEqual(harness.engine.accessDeniedCounts, [.set: 1, .get: 1, .acquire: 1, .multi: 1, .backup: 1])
        XCTAssertEqual(harness.engine.statistics.accessDenied, harness.engine.accessDeniedCounts)
        let log = harness.engine.takeAccessDenialsToLog()
        XCTAssertEqual(log.denials.map(\.opcode), [.set, .get, .acquire, .multi, .backup])
        XCTAssertEqual(log.denials.first?.path, "/shared")
        XCTAssertEqual(log.denials.first?.identity.userID, 1001)
        XCTAssertEqual(log.suppressed, 0)
        // Ping and session requests need no permission.
        XCTAssertEqual(harness.call(.ping, on: 1), .success(.empty))
    }

    func testDenialsInALoopAreLoggedAtMostTenASecondAndTheRestCounted() throws {
        let harness = EngineHarness()
        harness.engine.setAccessRules(try policy("/ uid:1001 read"))
        _ = open(harness, 1, as: alice)
        for _ in 0..<25 { _ = harness.send(.delete(path: "/x", expectedVersion: -1), on: 1) }
        var log = harness.engine.takeAccessDenialsToLog()
        XCTAssertEqual(log.denials.count, Engine.deniedLogPerSecondMax)
        XCTAssertEqual(log.suppressed, 15)
        harness.advance(1_000)
        _ = harness.send(.delete(path: "/x", expectedVersion: -1), on: 1)
        log = harness.engine.takeAccessDenialsToLog()
        XCTAssertEqual(log.denials.count, 1)
        XCTAssertEqual(harness.engine.accessDeniedCounts[.delete], 26)
    }

    func testReplacedRulesDecideTheNextRequest() throws {
        let harness = EngineHarness()
        harness.engine.setAccessRules(try policy("/ uid:1001 read"))
        _ = open(harness, 1, as: alice)
        XCTAssertEqual(errorCode(harness.call(.create(path: "/a", data: [], mode: .persistent), on: 1)), .permissionDenied)
        harness.engine.setAccessRules(try policy("/ uid:1001 read,create"))
        XCTAssertEqual(errorCode(harness.call(.create(path: "/a", data: [], mode: .persistent), on: 1)), nil)
        harness.engine.setAccessRules(nil)
        XCTAssertEqual(errorCode(harness.call(.delete(path: "/a", expectedVersion: -1), on: 1)), nil)
    }

    func testATCPConnectionIsItsTokensPrincipal() throws {
        let harness = EngineHarness()
        let ciToken = Array("named-ci-token-0123456789".utf8)
        harness.engine.setAccessRules(try policy("token ci /t\n/ token:ci read,create\n/ token:default read", hasDefaultToken: true),
                                      namedTokens: ["ci": ciToken])
        // The --tcp-token-file token: principal `default`.
        harness.openSession(1, transport: .tcp)
        XCTAssertEqual(errorCode(harness.call(.create(path: "/a", data: [], mode: .persistent), on: 1)), .permissionDenied)
        XCTAssertTrue(harness.engine.connectionOpened(2, transport: .tcp, now: harness.now))
        _ = harness.call(.hello(version: ProtocolVersion.current, clientName: "ci"), on: 2)
        XCTAssertEqual(errorCode(harness.call(.authenticate(token: Array("wrong-token-0123456789".utf8)), on: 2)), .notAuthorized)
        XCTAssertEqual(harness.call(.authenticate(token: ciToken), on: 2), .success(.empty))
        guard case .success(.session) = harness.call(.openSession(timeoutMilliseconds: 0, flags: []), on: 2) else {
            return XCTFail("the named token opens a session")
        }
        XCTAssertEqual(errorCode(harness.call(.create(path: "/a", data: [], mode: .persistent), on: 2)), nil)
    }

    // MARK: forceRelease

    func testForceReleaseEndsTheHoldWithLockLostAndGrantsTheNextAHigherToken() throws {
        let harness = EngineHarness()
        harness.engine.setAccessRules(try policy("/ gid:500 all\n/ uid:1001 read,lock,create"))
        let victim = open(harness, 1, as: alice)
        _ = open(harness, 2, as: alice)
        _ = open(harness, 3, as: ops)
        let first = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        let held = try XCTUnwrap(granted(first.outputs, to: 1, requestID: first.requestID))
        let waiting = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 2)
        // Without admin: refused, nothing changes.
        XCTAssertEqual(errorCode(harness.call(.forceRelease(path: "/locks/a", sessionID: victim), on: 2)), .permissionDenied)
        let (requestID, outputs) = harness.send(.forceRelease(path: "/locks/a", sessionID: 0), on: 3)
        XCTAssertEqual(replies(outputs, to: 3).first { $0.requestID == requestID }?.result, .success(.forceReleased(ended: 1)))
        XCTAssertEqual(events(outputs, to: 1), [.lockLost(node: held.node, token: held.token, reason: .nodeDeleted)])
        let next = try XCTUnwrap(granted(outputs, to: 2, requestID: waiting.requestID))
        XCTAssertGreaterThan(next.token, held.token)
        XCTAssertEqual(errorCode(harness.call(.release(node: held.node, token: held.token), on: 1)), .lockLost)
    }

    func testForceReleaseOfAWaitingSessionAnswersItsAcquireLockLost() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        let waiterSession = harness.openSession(2).id
        let first = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 1)
        let held = try XCTUnwrap(granted(first.outputs, to: 1, requestID: first.requestID))
        let waiting = harness.send(.acquire(LockRequest(path: "/locks/a")), on: 2)
        let (requestID, outputs) = harness.send(.forceRelease(path: "/locks/a", sessionID: waiterSession), on: 1)
        XCTAssertEqual(replies(outputs, to: 1).first { $0.requestID == requestID }?.result, .success(.forceReleased(ended: 1)))
        XCTAssertEqual(errorCode(replies(outputs, to: 2).first { $0.requestID == waiting.requestID }!.result), .lockLost)
        // The holder keeps its hold.
        XCTAssertEqual(harness.call(.checkToken(path: "/locks/a", token: held.token), on: 1), .success(.tokenStatus(current: true)))
        XCTAssertEqual(harness.call(.forceRelease(path: "/locks/a", sessionID: 999), on: 1), .success(.forceReleased(ended: 0)))
        XCTAssertEqual(errorCode(harness.call(.forceRelease(path: "/locks/none", sessionID: 0), on: 1)), .noNode)
    }
}
