import BatonNamespace
import BatonProtocol
import XCTest

final class SessionTests: XCTestCase {
    let start = Time(milliseconds: 10_000)

    func testTimeoutIsClampedAndZeroMeansDefault() throws {
        let namespace = makeNamespace {
            $0.defaultSessionTimeoutMilliseconds = 4_000
            $0.limits.sessionTimeoutMillisecondsMin = 1_000
            $0.limits.sessionTimeoutMillisecondsMax = 60_000
        }
        XCTAssertEqual(try namespace.openSession(timeoutMilliseconds: 0, now: start).timeoutMilliseconds, 4_000)
        XCTAssertEqual(try namespace.openSession(timeoutMilliseconds: 10, now: start).timeoutMilliseconds, 1_000)
        XCTAssertEqual(try namespace.openSession(timeoutMilliseconds: 90_000, now: start).timeoutMilliseconds, 60_000)
        let session = try namespace.openSession(timeoutMilliseconds: 5_000, now: start)
        XCTAssertEqual(session.timeoutMilliseconds, 5_000)
        XCTAssertEqual(session.deadlineMilliseconds, 15_000)
    }

    func testIdsAreUniqueNonzeroAndSecretsDiffer() throws {
        let namespace = makeNamespace()
        var ids = Set<UInt64>(), secrets = Set<SessionSecret>()
        for _ in 0..<100 {
            let session = try namespace.openSession(timeoutMilliseconds: 0, now: start)
            XCTAssertNotEqual(session.id, 0)
            ids.insert(session.id)
            secrets.insert(session.secret)
            namespace.closeSession(session.id, now: start)
        }
        XCTAssertEqual(ids.count, 100, "ids are never reused, even after close")
        XCTAssertEqual(secrets.count, 100)
    }

    func testIdsDependOnTheSeed() throws {
        let first = try makeNamespace(seed: 1).openSession(timeoutMilliseconds: 0, now: start)
        let again = try makeNamespace(seed: 1).openSession(timeoutMilliseconds: 0, now: start)
        let other = try makeNamespace(seed: 2).openSession(timeoutMilliseconds: 0, now: start)
        XCTAssertEqual(first, again, "seeded: repeatable")
        XCTAssertNotEqual(first.id, other.id)
    }

    func testSessionLimit() throws {
        let namespace = makeNamespace { $0.limits.sessionsMax = 2 }
        let first = try namespace.openSession(timeoutMilliseconds: 0, now: start)
        _ = try namespace.openSession(timeoutMilliseconds: 0, now: start)
        assertFails(.tooManySessions) { try namespace.openSession(timeoutMilliseconds: 0, now: self.start) }
        namespace.closeSession(first.id, now: start)
        XCTAssertNoThrow(try namespace.openSession(timeoutMilliseconds: 0, now: start))
    }

    func testExpiryDeletesEphemeralsAndFiresWatches() throws {
        let namespace = makeNamespace()
        let owner = try namespace.openSession(timeoutMilliseconds: 1_000, now: start)
        let observer = try namespace.openSession(timeoutMilliseconds: 100_000, now: start)
        try namespace.create("/locks", data: [], mode: .persistent, session: 0, now: start)
        let node = try namespace.create("/locks/w-", data: [], mode: .ephemeralSequential, session: owner.id, now: start).path
        _ = try namespace.exists(node, watcher: .session(observer.id))
        _ = try namespace.children("/locks", watcher: .internal(5))
        _ = try namespace.get("/locks", watcher: .session(owner.id))
        _ = namespace.takeOutputs()

        XCTAssertEqual(namespace.tick(now: start.advanced(by: 999)), [])
        XCTAssertNotNil(try namespace.exists(node))
        XCTAssertEqual(namespace.nextDeadlineMilliseconds, 11_000)

        XCTAssertEqual(namespace.tick(now: start.advanced(by: 1_000)), [owner.id])
        XCTAssertNil(try namespace.exists(node))
        XCTAssertNil(namespace.session(owner.id))
        XCTAssertEqual(namespace.ephemeralNodes(of: owner.id), [])
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [
            .watch(.session(observer.id), .deleted, path: node),
            .watch(.internal(5), .childrenChanged, path: "/locks"),
        ])
        XCTAssertEqual(namespace.watchCount(of: .session(owner.id)), 0, "the ended session's watches are gone")
        try namespace.set("/locks", data: [1], expectedVersion: -1, now: start)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [])
    }

    func testTouchPostponesExpiry() throws {
        let namespace = makeNamespace()
        let session = try namespace.openSession(timeoutMilliseconds: 1_000, now: start)
        XCTAssertTrue(namespace.touch(session.id, now: start.advanced(by: 800)))
        XCTAssertTrue(namespace.touch(session.id, now: start.advanced(by: 100)), "an earlier touch shortens nothing")
        XCTAssertEqual(namespace.tick(now: start.advanced(by: 1_000)), [])
        XCTAssertEqual(namespace.session(session.id)?.deadlineMilliseconds, 11_800)
        XCTAssertEqual(namespace.nextDeadlineMilliseconds, 11_800)
        XCTAssertEqual(namespace.tick(now: start.advanced(by: 1_799)), [])
        XCTAssertEqual(namespace.tick(now: start.advanced(by: 1_800)), [session.id])
        XCTAssertFalse(namespace.touch(session.id, now: start.advanced(by: 1_900)))
    }

    func testCloseDeletesEphemeralsOldestFirst() throws {
        let namespace = makeNamespace()
        let session = try namespace.openSession(timeoutMilliseconds: 0, now: start)
        let watcher = Watcher.session(99)
        for name in ["/z", "/a", "/m"] {
            try namespace.create(name, data: [], mode: .ephemeral, session: session.id, now: start)
            _ = try namespace.exists(name, watcher: watcher)
        }
        _ = namespace.takeOutputs()
        namespace.closeSession(session.id, now: start)
        let deleted = watchEvents(namespace.takeOutputs()).compactMap { output -> String? in
            if case .watch(_, .deleted, let path) = output { return path }
            return nil
        }
        XCTAssertEqual(deleted, ["/z", "/a", "/m"])
        XCTAssertEqual(try namespace.children("/").names, [])
    }

    func testEphemeralsAreNotLogged() throws {
        let namespace = makeNamespace()
        let session = try namespace.openSession(timeoutMilliseconds: 0, now: start)
        try namespace.create("/p", data: [], mode: .persistent, session: 0, now: start)
        _ = namespace.takeOutputs()
        try namespace.create("/p/e", data: [1], mode: .ephemeral, session: session.id, now: start)
        try namespace.set("/p/e", data: [2], expectedVersion: -1, now: start)
        try namespace.delete("/p/e", expectedVersion: -1, now: start)
        XCTAssertEqual(records(namespace.takeOutputs()), [])
    }
}
