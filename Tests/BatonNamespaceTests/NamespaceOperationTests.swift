import BatonNamespace
import BatonProtocol
import XCTest

final class NamespaceOperationTests: XCTestCase {
    let now = Time(monotonicMilliseconds: 5_000, wallMilliseconds: 1_700_000_000_000)

    func testCreateGetSetDelete() throws {
        let namespace = makeNamespace()
        let created = try namespace.create("/a", data: bytes("one"), mode: .persistent, session: 0, now: now)
        XCTAssertEqual(created.path, "/a")
        XCTAssertEqual(created.stat.version, 0)
        XCTAssertEqual(created.stat.dataLength, 3)
        XCTAssertEqual(created.stat.createdMilliseconds, now.wallMilliseconds)
        XCTAssertEqual(created.stat.createdTransaction, created.stat.modifiedTransaction)
        XCTAssertEqual(created.stat.kind, .persistent)

        let read = try namespace.get("/a")
        XCTAssertEqual(read.data, bytes("one"))
        XCTAssertEqual(read.stat, created.stat)

        let later = now.advanced(by: 10)
        let stat = try namespace.set("/a", data: bytes("two!"), expectedVersion: 0, now: later)
        XCTAssertEqual(stat.version, 1)
        XCTAssertEqual(stat.dataLength, 4)
        XCTAssertGreaterThan(stat.modifiedTransaction, created.stat.createdTransaction)
        XCTAssertEqual(stat.createdTransaction, created.stat.createdTransaction)
        XCTAssertEqual(stat.modifiedMilliseconds, later.wallMilliseconds)
        XCTAssertEqual(try namespace.get("/a").data, bytes("two!"))

        XCTAssertEqual(try namespace.exists("/a")?.version, 1)
        try namespace.delete("/a", expectedVersion: 1, now: later)
        XCTAssertNil(try namespace.exists("/a"))
        assertFails(.noNode) { try namespace.get("/a") }
    }

    func testEveryWriteTakesANewTransaction() throws {
        let namespace = makeNamespace()
        var seen: [UInt64] = []
        seen.append(try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now).stat.createdTransaction)
        seen.append(try namespace.set("/a", data: [1], expectedVersion: -1, now: now).modifiedTransaction)
        seen.append(try namespace.create("/a/b", data: [], mode: .persistent, session: 0, now: now).stat.createdTransaction)
        try namespace.delete("/a/b", expectedVersion: -1, now: now)
        seen.append(namespace.transactionCurrent)
        XCTAssertEqual(seen, seen.sorted())
        XCTAssertEqual(Set(seen).count, seen.count)
    }

    func testParentStatTracksChildren() throws {
        let namespace = makeNamespace()
        try namespace.create("/p", data: [], mode: .persistent, session: 0, now: now)
        let child = try namespace.create("/p/c", data: [], mode: .persistent, session: 0, now: now)
        var parent = try namespace.get("/p").stat
        XCTAssertEqual(parent.childrenCount, 1)
        XCTAssertEqual(parent.childrenVersion, 1)
        XCTAssertEqual(parent.childrenTransaction, child.stat.createdTransaction)
        XCTAssertEqual(parent.version, 0, "a child does not change the parent's data version")
        try namespace.delete("/p/c", expectedVersion: -1, now: now)
        parent = try namespace.get("/p").stat
        XCTAssertEqual(parent.childrenCount, 0)
        XCTAssertEqual(parent.childrenVersion, 2)
    }

    func testParentStatsStayRightAsCreatesAndDeletesMoveBetweenParents() throws {
        // A create or delete reuses the parent and grandparent paths of the one before when its parent
        // is the same: parents of one length under different grandparents ("/a/x", "/b/x"), in turn.
        let namespace = makeNamespace()
        for path in ["/a", "/b", "/a/x", "/b/x"] {
            try namespace.create(path, data: [], mode: .persistent, session: 0, now: now)
        }
        for round in 0..<3 {
            for parent in ["/a/x", "/b/x", "/b/x", "/a", "/a/x"] {
                try namespace.create(parent + "/c-", data: [], mode: .persistentSequential, session: 0, now: now)
            }
            for parent in ["/b/x", "/a/x", "/a/x", "/a"] {
                let name = try XCTUnwrap(namespace.childNames(of: parent)?.first(where: { $0.hasPrefix("c-") }))
                try namespace.delete(parent + "/" + name, expectedVersion: -1, now: now)
            }
            // Per round: "/a" one child in and out, "/a/x" two, "/b/x" two in and one out.
            let expected: [String: (count: UInt32, version: Int32)] = [
                "/a": (1, Int32(1 + 2 * (round + 1))), "/b": (1, 1),
                "/a/x": (0, Int32(4 * (round + 1))), "/b/x": (UInt32(round + 1), Int32(3 * (round + 1))),
            ]
            for (path, stat) in expected {
                let actual = try namespace.get(path).stat
                XCTAssertEqual(actual.childrenCount, stat.count, "\(path), round \(round)")
                XCTAssertEqual(actual.childrenVersion, stat.version, "\(path), round \(round)")
            }
        }
    }

    func testCreateErrors() throws {
        let namespace = makeNamespace { $0.limits.dataBytesMax = 8; $0.limits.nodesMax = 4 }
        assertFails(.noNode) { try namespace.create("/missing/child", data: [], mode: .persistent, session: 0, now: self.now) }
        assertFails(.invalidPath) { try namespace.create("/bad/", data: [], mode: .persistent, session: 0, now: self.now) }
        assertFails(.nodeExists) { try namespace.create("/", data: [], mode: .persistent, session: 0, now: self.now) }
        assertFails(.dataTooLarge) { try namespace.create("/big", data: Array(repeating: 0, count: 9), mode: .persistent, session: 0, now: self.now) }
        try namespace.create("/a", data: Array(repeating: 0, count: 8), mode: .persistent, session: 0, now: now)
        assertFails(.nodeExists) { try namespace.create("/a", data: [], mode: .persistent, session: 0, now: self.now) }
        assertFails(.sessionRequired) { try namespace.create("/e", data: [], mode: .ephemeral, session: 0, now: self.now) }
        assertFails(.sessionExpired) { try namespace.create("/e", data: [], mode: .ephemeral, session: 12345, now: self.now) }
        try namespace.create("/b", data: [], mode: .persistent, session: 0, now: now)
        try namespace.create("/c", data: [], mode: .persistent, session: 0, now: now)
        XCTAssertEqual(namespace.nodeCount, 4, "the root counts")
        assertFails(.tooManyNodes) { try namespace.create("/d", data: [], mode: .persistent, session: 0, now: self.now) }
    }

    func testEphemeralCannotHaveChildren() throws {
        let namespace = makeNamespace()
        let session = try namespace.openSession(timeoutMilliseconds: 0, now: now)
        let ephemeral = try namespace.create("/e", data: [], mode: .ephemeral, session: session.id, now: now)
        XCTAssertEqual(ephemeral.stat.ephemeralOwner, session.id)
        XCTAssertEqual(ephemeral.stat.kind, .ephemeral)
        assertFails(.ephemeralParent) { try namespace.create("/e/child", data: [], mode: .persistent, session: 0, now: self.now) }
        assertFails(.ephemeralParent) {
            try namespace.create("/e/child", data: [], mode: .ephemeralSequential, session: session.id, now: self.now)
        }
        XCTAssertEqual(try namespace.children("/e").names, [])
    }

    func testDeleteErrors() throws {
        let namespace = makeNamespace()
        assertFails(.invalidArgument) { try namespace.delete("/", expectedVersion: -1, now: self.now) }
        assertFails(.noNode) { try namespace.delete("/nothing", expectedVersion: -1, now: self.now) }
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        try namespace.create("/a/b", data: [], mode: .persistent, session: 0, now: now)
        assertFails(.notEmpty) { try namespace.delete("/a", expectedVersion: -1, now: self.now) }
        assertFails(.badVersion) { try namespace.delete("/a/b", expectedVersion: 3, now: self.now) }
        XCTAssertNotNil(try namespace.exists("/a/b"))
        try namespace.delete("/a/b", expectedVersion: 0, now: now)
        try namespace.delete("/a", expectedVersion: -1, now: now)
        XCTAssertEqual(namespace.nodeCount, 1)
    }

    func testSetAndCheckErrors() throws {
        let namespace = makeNamespace { $0.limits.dataBytesMax = 4 }
        assertFails(.noNode) { try namespace.set("/a", data: [], expectedVersion: -1, now: self.now) }
        assertFails(.noNode) { try namespace.check("/a", expectedVersion: -1) }
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        assertFails(.badVersion) { try namespace.set("/a", data: [], expectedVersion: 1, now: self.now) }
        assertFails(.dataTooLarge) { try namespace.set("/a", data: [1, 2, 3, 4, 5], expectedVersion: -1, now: self.now) }
        XCTAssertEqual(try namespace.get("/a").stat.version, 0, "failed sets change nothing")
        XCTAssertNoThrow(try namespace.check("/a", expectedVersion: 0))
        XCTAssertNoThrow(try namespace.check("/a", expectedVersion: -1))
        assertFails(.badVersion) { try namespace.check("/a", expectedVersion: 1) }
        assertFails(.invalidPath) { try namespace.check("a", expectedVersion: 1) }
    }

    func testReadErrors() {
        let namespace = makeNamespace()
        assertFails(.noNode) { try namespace.get("/x") }
        assertFails(.noNode) { try namespace.children("/x") }
        assertFails(.invalidPath) { try namespace.exists("/x/") }
        assertFails(.invalidPath) { try namespace.get("") }
        assertFails(.invalidPath) { try namespace.children("/a/../b") }
    }

    func testChildrenAreSorted() throws {
        let namespace = makeNamespace()
        for name in ["c", "a", "b", "aa"] {
            try namespace.create("/" + name, data: [], mode: .persistent, session: 0, now: now)
        }
        let listing = try namespace.children("/")
        XCTAssertEqual(listing.names, ["a", "aa", "b", "c"])
        XCTAssertEqual(listing.stat.childrenCount, 4)
    }

    func testChildrenAreSortedByUTF8BytesNotByUnicodeNormalization() throws {
        let namespace = makeNamespace()
        // "e" + combining acute (0x65 0xCC 0x81) sorts before "f" (0x66) by bytes; Swift's own
        // string order compares the normalized "é" (U+00E9), which sorts after "f".
        let decomposed = "e\u{301}"
        for name in ["f", decomposed, "E"] {
            try namespace.create("/" + name, data: [], mode: .persistent, session: 0, now: now)
        }
        XCTAssertEqual(try namespace.children("/").names.map { Array($0.utf8) },
                       [Array("E".utf8), Array(decomposed.utf8), Array("f".utf8)])
    }

    func testSequentialNamesArePerParentAndTenDigits() throws {
        let namespace = makeNamespace()
        let session = try namespace.openSession(timeoutMilliseconds: 0, now: now)
        try namespace.create("/p", data: [], mode: .persistent, session: 0, now: now)
        try namespace.create("/q", data: [], mode: .persistent, session: 0, now: now)
        XCTAssertEqual(try namespace.create("/p/n-", data: [], mode: .persistentSequential, session: 0, now: now).path,
                       "/p/n-0000000000")
        XCTAssertEqual(try namespace.create("/p/m-", data: [], mode: .ephemeralSequential, session: session.id, now: now).path,
                       "/p/m-0000000001")
        // A plain child does not advance the counter.
        try namespace.create("/p/plain", data: [], mode: .persistent, session: 0, now: now)
        XCTAssertEqual(try namespace.create("/p/", data: [], mode: .persistentSequential, session: 0, now: now).path,
                       "/p/0000000002")
        XCTAssertEqual(try namespace.create("/q/n-", data: [], mode: .persistentSequential, session: 0, now: now).path,
                       "/q/n-0000000000", "each parent counts on its own")
        // Deleting children does not reuse numbers.
        try namespace.delete("/p/n-0000000000", expectedVersion: -1, now: now)
        XCTAssertEqual(try namespace.create("/p/n-", data: [], mode: .persistentSequential, session: 0, now: now).path,
                       "/p/n-0000000003")
    }

    func testSequentialPathLengthIncludesTheSuffix() {
        let namespace = makeNamespace { $0.limits.pathBytesMax = 16 }
        // "/abcdef" + 10 digits = 17 bytes.
        assertFails(.pathTooLong) { try namespace.create("/abcdef", data: [], mode: .persistentSequential, session: 0, now: self.now) }
        XCTAssertNoThrow(try namespace.create("/abcde", data: [], mode: .persistentSequential, session: 0, now: now))
    }

    func testSequentialNameTakenByAPlainNodeFails() throws {
        let namespace = makeNamespace()
        try namespace.create("/x0000000000", data: [], mode: .persistent, session: 0, now: now)
        assertFails(.nodeExists) { try namespace.create("/x", data: [], mode: .persistentSequential, session: 0, now: self.now) }
    }

    func testACreateRefusedForATakenNameLeavesItsParentAsItWas() throws {
        // Small reservations: the refused create would have moved the parent's bound and logged it.
        let namespace = makeNamespace { $0.sequenceReserveAhead = 2 }
        try namespace.create("/p", data: [], mode: .persistent, session: 0, now: now)
        try namespace.create("/p/x-", data: [], mode: .persistentSequential, session: 0, now: now)
        try namespace.create("/p/x-", data: [], mode: .persistentSequential, session: 0, now: now)
        try namespace.create("/p/x-0000000002", data: [], mode: .persistent, session: 0, now: now)
        let parent = try XCTUnwrap(namespace.node(at: "/p"))
        XCTAssertEqual(parent.sequenceNext, 2)
        _ = namespace.takeOutputs()
        let transaction = namespace.transactionCurrent
        assertFails(.nodeExists) { try namespace.create("/p/x-", data: [], mode: .persistentSequential, session: 0, now: self.now) }
        XCTAssertEqual(namespace.node(at: "/p"), parent, "children count and version, pzxid and sequence counters as they were")
        XCTAssertEqual(namespace.transactionCurrent, transaction)
        XCTAssertTrue(namespace.takeOutputs().isEmpty, "no record, no watch")
        XCTAssertEqual(namespace.nodeCount, 5)
        // The number is still the next one handed out.
        try namespace.delete("/p/x-0000000002", expectedVersion: -1, now: now)
        XCTAssertEqual(try namespace.create("/p/x-", data: [], mode: .persistentSequential, session: 0, now: now).path, "/p/x-0000000002")
    }

    func testTheLockLayersCreateAndDeleteAreCreateAndDelete() throws {
        // The same requests through both entry points give the same answers, state and outputs.
        let plain = makeNamespace(), lock = makeNamespace()
        for namespace in [plain, lock] {
            try namespace.create("/locks", data: [], mode: .container, session: 0, now: now)
            _ = namespace.takeOutputs()
        }
        let plainSession = try plain.openSession(timeoutMilliseconds: 0, now: now).id
        let lockSession = try lock.openSession(timeoutMilliseconds: 0, now: now).id
        XCTAssertEqual(plainSession, lockSession)
        for round in 0..<3 {
            let created = try plain.createReportingParent("/locks/x-", data: [1], mode: .ephemeralSequential, session: plainSession, now: now)
            let lockCreated = try lock.createLockNode("/locks/x-", data: [1], mode: .ephemeralSequential, session: lockSession, now: now)
            XCTAssertEqual(lockCreated.path, created.path)
            XCTAssertEqual(lockCreated.stat, created.stat)
            XCTAssertEqual(lockCreated.parentCreatedTransaction, created.parentCreatedTransaction)
            XCTAssertEqual(lock.node(at: "/locks"), plain.node(at: "/locks"))
            XCTAssertEqual(lock.ephemeralNodes(of: lockSession), plain.ephemeralNodes(of: plainSession))
            if round < 2 {
                try plain.delete(created.path, expectedVersion: -1, now: now)
                try lock.deleteLockNode(created.path, expectedVersion: -1, now: now)
            }
            XCTAssertEqual(lock.node(at: "/locks"), plain.node(at: "/locks"))
            XCTAssertEqual(lock.takeOutputs(), plain.takeOutputs())
            XCTAssertEqual(lock.containersAwaitingSweep, plain.containersAwaitingSweep)
        }
        // Refusals too: a taken version, a missing node, a closed session, a missing parent.
        assertFails(.badVersion) { try lock.deleteLockNode("/locks/x-0000000002", expectedVersion: 7, now: self.now) }
        assertFails(.noNode) { try lock.deleteLockNode("/locks/x-0000000001", expectedVersion: -1, now: self.now) }
        assertFails(.sessionExpired) { try lock.createLockNode("/locks/x-", data: [], mode: .ephemeralSequential, session: lockSession + 1, now: self.now) }
        assertFails(.noNode) { try lock.createLockNode("/other/x-", data: [], mode: .ephemeralSequential, session: lockSession, now: self.now) }
        XCTAssertEqual(lock.node(at: "/locks"), plain.node(at: "/locks"))
    }

    func testTheLockLayersCreateStillChecksThePathsLength() {
        let namespace = makeNamespace { $0.limits.pathBytesMax = 16 }
        // A lock path that passed `validate` ("/abcdef", 7 bytes), and a waiter name that takes it past the limit.
        assertFails(.pathTooLong) { try namespace.createLockNode("/abcdef", data: [], mode: .persistentSequential, session: 0, now: self.now) }
        assertFails(.pathTooLong) { try namespace.createLockNode("/abcdefghijklmnopq", data: [], mode: .persistent, session: 0, now: self.now) }
        XCTAssertNoThrow(try namespace.createLockNode("/abcde", data: [], mode: .persistentSequential, session: 0, now: now))
    }
}
