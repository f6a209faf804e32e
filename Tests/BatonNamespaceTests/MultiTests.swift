import BatonNamespace
import BatonProtocol
import XCTest

final class MultiTests: XCTestCase {
    let now = Time(milliseconds: 1_000)

    func testAllOperationsApplyAndSeeEachOther() throws {
        let namespace = makeNamespace()
        try namespace.create("/old", data: [], mode: .persistent, session: 0, now: now)
        _ = namespace.takeOutputs()
        let results = try namespace.multi([
            .create(path: "/a", data: [1], mode: .persistent),
            .create(path: "/a/b", data: [], mode: .persistentSequential),
            .set(path: "/a", data: [2], expectedVersion: 0),
            .check(path: "/a", expectedVersion: 1),
            .delete(path: "/old", expectedVersion: 0),
        ], session: 0, now: now)
        XCTAssertEqual(results.count, 5)
        guard case .created("/a/b0000000000", _) = results[1] else { return XCTFail("\(results[1])") }
        guard case .set(let stat) = results[2] else { return XCTFail() }
        XCTAssertEqual(stat.version, 1)
        XCTAssertEqual(results[3], .checked)
        XCTAssertEqual(results[4], .deleted)
        XCTAssertEqual(try namespace.get("/a").data, [2])
        XCTAssertNil(try namespace.exists("/old"))
        // Logged as a single record.
        let logged = records(namespace.takeOutputs())
        XCTAssertEqual(logged.count, 1)
        guard case .multi(let inner)? = logged.first else { return XCTFail("\(logged)") }
        XCTAssertGreaterThanOrEqual(inner.count, 5)
    }

    func testFailureChangesNothing() throws {
        let namespace = makeNamespace()
        let session = try namespace.openSession(timeoutMilliseconds: 0, now: now)
        try namespace.create("/p", data: [7], mode: .persistent, session: 0, now: now)
        _ = try namespace.get("/p", watcher: .session(1))
        _ = try namespace.children("/p", watcher: .session(1))
        _ = try namespace.exists("/p/new", watcher: .session(2))
        _ = namespace.takeOutputs()
        let before = namespace.snapshot().serialize()
        let transactionBefore = namespace.transactionCurrent

        XCTAssertThrowsError(try namespace.multi([
            .create(path: "/p/new", data: [], mode: .persistentSequential),
            .create(path: "/p/eph", data: [], mode: .ephemeral),
            .set(path: "/p", data: [8], expectedVersion: -1),
            .delete(path: "/p/missing", expectedVersion: -1),
        ], session: session.id, now: now)) { error in
            let failure = error as? MultiFailure
            XCTAssertEqual(failure?.index, 3)
            XCTAssertEqual(failure?.error.code, .noNode)
            XCTAssertEqual(failure?.replyError.code, .noNode)
            XCTAssertTrue(failure?.replyError.message.hasPrefix("operation 3") == true)
        }
        XCTAssertEqual(namespace.takeOutputs(), [], "no record, no watch")
        XCTAssertEqual(namespace.transactionCurrent, transactionBefore)
        XCTAssertEqual(namespace.snapshot().serialize(), before)
        XCTAssertEqual(namespace.ephemeralNodes(of: session.id), [])
        XCTAssertEqual(try namespace.get("/p").data, [7])
        // The sequence counter did not move, and the watches are still armed.
        XCTAssertEqual(try namespace.create("/p/new", data: [], mode: .persistentSequential, session: 0, now: now).path,
                       "/p/new0000000000")
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [
            .watch(.session(1), .childrenChanged, path: "/p"),
        ])
        try namespace.set("/p", data: [9], expectedVersion: -1, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [.watch(.session(1), .dataChanged, path: "/p")])
        XCTAssertEqual(namespace.watchCount(of: .session(2)), 1, "exists watch on /p/new0000000000's sibling untouched")
    }

    func testEachKindOfFailureReportsItsIndex() throws {
        let namespace = makeNamespace()
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        let cases: [([MultiOperation], Int, ErrorCode)] = [
            ([.check(path: "/a", expectedVersion: 5)], 0, .badVersion),
            ([.check(path: "/a", expectedVersion: 0), .create(path: "/a", data: [], mode: .persistent)], 1, .nodeExists),
            ([.create(path: "/b", data: [], mode: .persistent), .create(path: "bad", data: [], mode: .persistent)], 1, .invalidPath),
            ([.create(path: "/b", data: [], mode: .persistent), .create(path: "/b/c", data: [], mode: .persistent),
              .delete(path: "/b", expectedVersion: -1)], 2, .notEmpty),
        ]
        for (operations, index, code) in cases {
            XCTAssertThrowsError(try namespace.multi(operations, session: 0, now: now)) { error in
                XCTAssertEqual((error as? MultiFailure)?.index, index)
                XCTAssertEqual((error as? MultiFailure)?.error.code, code)
            }
            XCTAssertNil(try namespace.exists("/b"))
        }
    }

    func testTooManyOperations() {
        let namespace = makeNamespace { $0.limits.multiOperationsMax = 2 }
        let operations = Array(repeating: MultiOperation.check(path: "/", expectedVersion: -1), count: 3)
        assertFails(.tooManyOperations) { try namespace.multi(operations, session: 0, now: self.now) }
        XCTAssertNoThrow(try namespace.multi(Array(operations.prefix(2)), session: 0, now: now))
    }

    func testWatchesFireOnlyAfterTheWholeMulti() throws {
        let namespace = makeNamespace()
        _ = try namespace.exists("/a", watcher: .session(1))
        _ = try namespace.multi([
            .create(path: "/a", data: [], mode: .persistent),
            .set(path: "/a", data: [1], expectedVersion: -1),
        ], session: 0, now: now)
        let outputs = namespace.takeOutputs()
        XCTAssertEqual(watchEvents(outputs), [.watch(.session(1), .created, path: "/a")])
        guard case .persist = outputs.first else { return XCTFail("the record comes first") }
    }
}
