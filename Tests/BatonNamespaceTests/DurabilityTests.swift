import BatonNamespace
import BatonProtocol
import XCTest
import BatonTestSupport

final class DurabilityTests: XCTestCase {
    let start = Time(monotonicMilliseconds: 1_000, wallMilliseconds: 1_700_000_000_000)

    /// A mixed workload; returns every record it logged, in order.
    func runWorkload(_ namespace: Namespace, now: Time, rounds: Int = 30) throws -> [[UInt8]] {
        var logged: [[UInt8]] = []
        let session = try namespace.openSession(timeoutMilliseconds: 0, now: now)
        try namespace.create("/app", data: bytes("config"), mode: .persistent, session: 0, now: now)
        try namespace.create("/locks", data: [], mode: .container, session: 0, now: now)
        for round in 0..<rounds {
            let time = now.advanced(by: UInt64(round))
            try namespace.create("/app/s-", data: [UInt8(round)], mode: .persistentSequential, session: 0, now: time)
            try namespace.create("/locks/w-", data: [], mode: .ephemeralSequential, session: session.id, now: time)
            try namespace.set("/app", data: bytes("v\(round)"), expectedVersion: -1, now: time)
            if round % 3 == 0 { try namespace.delete("/app/s-" + NamespacePath.sequenceSuffix(UInt64(round)), expectedVersion: -1, now: time) }
            if round % 5 == 0 {
                _ = try namespace.multi([.create(path: "/app/m\(round)", data: [], mode: .persistent),
                                         .set(path: "/app/m\(round)", data: [1], expectedVersion: 0)], session: 0, now: time)
            }
            logged += persistedBytes(namespace.takeOutputs())
        }
        return logged
    }

    /// Persistent state compared field by field, without what ephemerals changed in their parents
    /// (children version and transaction: ephemeral creates and deletes are not logged).
    func assertSamePersistentState(_ left: Namespace, _ right: Namespace, file: StaticString = #filePath, line: UInt = #line) {
        let leftNodes = left.snapshot().persistentNodes(), rightNodes = right.snapshot().persistentNodes()
        XCTAssertEqual(Set(leftNodes.keys), Set(rightNodes.keys), file: file, line: line)
        for (path, node) in leftNodes {
            guard let other = rightNodes[path] else { continue }
            XCTAssertEqual(node.data, other.data, path, file: file, line: line)
            XCTAssertEqual(node.stat.version, other.stat.version, path, file: file, line: line)
            XCTAssertEqual(node.stat.createdTransaction, other.stat.createdTransaction, path, file: file, line: line)
            XCTAssertEqual(node.stat.modifiedTransaction, other.stat.modifiedTransaction, path, file: file, line: line)
            XCTAssertEqual(node.stat.createdMilliseconds, other.stat.createdMilliseconds, path, file: file, line: line)
            XCTAssertEqual(node.stat.modifiedMilliseconds, other.stat.modifiedMilliseconds, path, file: file, line: line)
            XCTAssertEqual(node.stat.kind, other.stat.kind, path, file: file, line: line)
            XCTAssertEqual(node.stat.childrenCount, other.stat.childrenCount, path, file: file, line: line)
        }
    }

    func testRecordsRoundTrip() throws {
        let samples: [NamespaceRecord] = [
            .create(transaction: 1, wallMilliseconds: 2, path: "/a", data: [1, 2], kind: .container, parentChildrenVersion: 3),
            .delete(transaction: 4, path: "/a/b", parentChildrenVersion: -1),
            .set(transaction: 5, wallMilliseconds: 6, path: "/ü", data: [], version: 7),
            .sweepContainer(transaction: 8, path: "/c", parentChildrenVersion: 9),
            .reserveTransactions(upTo: 10_001),
            .reserveSequence(parent: "/p", upTo: 1_000),
            .multi([.reserveTransactions(upTo: 1), .delete(transaction: 2, path: "/x", parentChildrenVersion: 0)]),
        ]
        for record in samples {
            let encoded = record.encode()
            XCTAssertEqual(encoded.first, NamespaceRecord.formatVersion)
            XCTAssertEqual(try NamespaceRecord.decode(encoded), record)
        }
    }

    func testBadRecordsAreRefusedNotCrashed() {
        let good = NamespaceRecord.create(transaction: 1, wallMilliseconds: 2, path: "/a", data: [1], kind: .persistent,
                                          parentChildrenVersion: 1).encode()
        for length in 0..<good.count {
            XCTAssertThrowsError(try NamespaceRecord.decode(Array(good.prefix(length))), "truncated at \(length)")
        }
        XCTAssertThrowsError(try NamespaceRecord.decode([99] + good.dropFirst()), "unknown version")
        XCTAssertThrowsError(try NamespaceRecord.decode([1, 200]), "unknown type")
        XCTAssertThrowsError(try NamespaceRecord.decode(good + [0]), "trailing byte")
        XCTAssertThrowsError(try NamespaceRecord.decode([1, 7, 0xFF, 0xFF, 0xFF, 0xFF]), "absurd multi count")
    }

    func testReplayReproducesPersistentState() throws {
        let live = makeNamespace(at: 1_000)
        let logged = try runWorkload(live, now: start)
        let recovered = try Namespace(configuration: makeConfiguration(), now: start.advanced(by: 100),
                                      random: SeededGenerator(seed: 9), recoveringFrom: nil, records: logged)
        assertSamePersistentState(live, recovered)
        XCTAssertEqual(try recovered.get("/app").data, try live.get("/app").data)
        XCTAssertEqual(try recovered.children("/locks").names, [], "ephemerals are not recovered")
    }

    func testReplayOfPersistentOnlyWorkloadGivesIdenticalStats() throws {
        let live = makeNamespace()
        var logged: [[UInt8]] = []
        try live.create("/a", data: [1], mode: .persistent, session: 0, now: start)
        try live.create("/a/b", data: [2], mode: .persistentSequential, session: 0, now: start)
        try live.set("/a", data: [3], expectedVersion: 0, now: start.advanced(by: 5))
        try live.create("/c", data: [], mode: .container, session: 0, now: start)
        try live.delete("/a/b0000000000", expectedVersion: -1, now: start)
        logged = persistedBytes(live.takeOutputs())
        let recovered = try Namespace(configuration: makeConfiguration(), now: start, recoveringFrom: nil, records: logged)
        XCTAssertEqual(recovered.snapshot().persistentNodes().mapValues(\.stat), live.snapshot().persistentNodes().mapValues(\.stat))
    }

    /// `batond --in-memory`: no log, so no record is made; the state, the watches and a snapshot
    /// (a backup) are those of a namespace that logs.
    func testNamespaceWithoutALogMakesNoRecordsAndKeepsTheSameState() throws {
        let logging = makeNamespace(), unlogged = makeNamespace { $0.logsRecords = false }
        XCTAssertFalse(try runWorkload(logging, now: start).isEmpty)
        XCTAssertEqual(try runWorkload(unlogged, now: start), [])
        assertSamePersistentState(logging, unlogged)
        XCTAssertEqual(unlogged.snapshot().persistentNodes(), logging.snapshot().persistentNodes())
        for namespace in [logging, unlogged] {
            _ = try namespace.get("/app", watcher: .session(7))
            _ = try namespace.children("/app", watcher: .session(7))
            try namespace.set("/app", data: [9], expectedVersion: -1, now: start)
            try namespace.create("/app/late", data: [], mode: .persistent, session: 0, now: start)
        }
        let loggedOutputs = logging.takeOutputs(), unloggedOutputs = unlogged.takeOutputs()
        XCTAssertEqual(persistedBytes(loggedOutputs).count, 2)
        XCTAssertEqual(unloggedOutputs, watchEvents(loggedOutputs))
        XCTAssertEqual(unloggedOutputs.count, 2)
        let restored = try Namespace(configuration: makeConfiguration(), now: start,
                                     recoveringFrom: unlogged.snapshot().serialize(), records: [[UInt8]]())
        assertSamePersistentState(logging, restored)
    }

    func testSnapshotRoundTrip() throws {
        let live = makeNamespace()
        _ = try runWorkload(live, now: start)
        let snapshot = live.snapshot()
        let bytes = snapshot.serialize()
        XCTAssertEqual(bytes.first, NamespaceSnapshot.formatVersion)
        let restored = try Namespace(configuration: makeConfiguration(), now: start, recoveringFrom: bytes, records: [[UInt8]]())
        assertSamePersistentState(live, restored)
        XCTAssertEqual(restored.snapshot().persistentNodes(), live.snapshot().persistentNodes().mapValues { node in
            var node = node
            node.sequenceNext = node.sequenceReserved  // counters restart at their marks
            return node
        })
        XCTAssertEqual(restored.snapshot().serialize().count, bytes.count)
    }

    /// The snapshot thread writes the bytes as they are serialized: pieces of about the size asked
    /// for (one buffer reused, never the whole snapshot), together the bytes of the whole, which
    /// restore the same state; ephemeral nodes are left out of the count written first.
    func testSnapshotStreamsInBoundedPiecesThatMakeTheWhole() throws {
        let live = makeNamespace()
        _ = try runWorkload(live, now: start)
        try live.create("/big", data: [UInt8](repeating: 9, count: 300), mode: .persistent, session: 0, now: start)
        let snapshot = live.snapshot()
        var pieces: [[UInt8]] = []
        snapshot.serialize(pieceBytes: 100) { pieces.append($0) }
        XCTAssertGreaterThan(pieces.count, 10)
        for piece in pieces.dropLast() {
            XCTAssertGreaterThanOrEqual(piece.count, 100)
            // Past the size asked for by at most one node (the largest: 300 bytes of data).
            XCTAssertLessThan(piece.count, 100 + 400)
        }
        let whole = pieces.flatMap { $0 }
        XCTAssertEqual(whole, snapshot.serialize())
        let restored = try Namespace(configuration: makeConfiguration(), now: start, recoveringFrom: whole, records: [[UInt8]]())
        assertSamePersistentState(live, restored)

        // A failing writer stops the walk: nothing is handed out after the error.
        struct Full: Error {}
        var calls = 0
        XCTAssertThrowsError(try snapshot.serialize(pieceBytes: 100) { (_: [UInt8]) throws(Full) in
            calls += 1
            if calls == 2 { throw Full() }
        })
        XCTAssertEqual(calls, 2)
    }

    func testSnapshotIsAValueUnaffectedByLaterWrites() throws {
        let live = makeNamespace()
        try live.create("/a", data: [1], mode: .persistent, session: 0, now: start)
        let snapshot = live.snapshot()
        let before = snapshot.serialize()
        try live.set("/a", data: [2], expectedVersion: -1, now: start)
        try live.create("/b", data: [], mode: .persistent, session: 0, now: start)
        XCTAssertEqual(snapshot.serialize(), before)
        XCTAssertEqual(snapshot.persistentNodes()["/a"]?.data, [1])
    }

    func testSnapshotPlusLaterRecords() throws {
        let live = makeNamespace()
        let early = try runWorkload(live, now: start, rounds: 10)
        let snapshotBytes = live.snapshot().serialize()
        try live.create("/after", data: [5], mode: .persistent, session: 0, now: start)
        try live.set("/app", data: bytes("late"), expectedVersion: -1, now: start)
        let late = persistedBytes(live.takeOutputs())
        // Records already in the snapshot are skipped when replayed again.
        let recovered = try Namespace(configuration: makeConfiguration(), now: start, recoveringFrom: snapshotBytes,
                                      records: early + late)
        assertSamePersistentState(live, recovered)
        XCTAssertEqual(try recovered.get("/after").data, [5])
    }

    func testBadSnapshotsAreRefused() throws {
        let live = makeNamespace()
        try live.create("/a", data: [1], mode: .persistent, session: 0, now: start)
        let good = live.snapshot().serialize()
        for length in [0, 1, 10, 25, good.count - 1] {
            XCTAssertThrowsError(try Namespace(configuration: makeConfiguration(), now: start,
                                               recoveringFrom: Array(good.prefix(length)), records: [[UInt8]]()))
        }
        XCTAssertThrowsError(try Namespace(configuration: makeConfiguration(), now: start,
                                           recoveringFrom: [2] + good.dropFirst(), records: [[UInt8]]()))
    }

    /// Snapshot bytes written by hand (docs/RECORDS.md): persistent nodes with empty data, in the given order.
    private func handWrittenSnapshot(_ paths: [String]) -> [UInt8] {
        var writer = WireWriter()
        writer.u8(NamespaceSnapshot.formatVersion)
        writer.u64(10)  // transaction current
        writer.u64(20)  // transaction reserved
        writer.u64(UInt64(paths.count))
        for (index, path) in paths.enumerated() {
            writer.string(path)
            writer.u8(NodeKind.persistent.rawValue)
            for _ in 0..<5 { writer.u64(UInt64(index)) }  // czxid, mzxid, pzxid, ctime, mtime
            writer.i32(0)
            writer.i32(0)
            writer.u64(0)  // sequence next
            writer.u64(0)  // sequence reserved
            writer.blob([])
        }
        return writer.bytes
    }

    func testSnapshotsMustListParentsBeforeChildrenAndNoNodeTwice() throws {
        func recover(_ paths: [String]) throws -> Namespace {
            try Namespace(configuration: makeConfiguration(), now: start, recoveringFrom: handWrittenSnapshot(paths),
                          records: [[UInt8]]())
        }
        let restored = try recover(["/", "/a", "/a/x", "/a/x/deep", "/a/y", "/b"])
        XCTAssertEqual(try restored.children("/").names, ["a", "b"])
        XCTAssertEqual(try restored.children("/a").names, ["x", "y"])
        XCTAssertEqual(try restored.exists("/a")?.childrenCount, 2)
        XCTAssertEqual(try restored.exists("/a/x/deep")?.childrenCount, 0)
        XCTAssertEqual(restored.nodeCount, 6)
        XCTAssertThrowsError(try recover(["/", "/a/x", "/a"]), "a child before its parent")
        XCTAssertThrowsError(try recover(["/", "/a", "/b", "/a/x"]), "a child after its parent's subtree closed")
        XCTAssertThrowsError(try recover(["/", "/a", "/a"]), "the same node twice")
        XCTAssertThrowsError(try recover(["/a", "/"]), "not starting at the root")
        // The parent is matched by its bytes up to the last "/": a sibling sharing a prefix is not it.
        XCTAssertThrowsError(try recover(["/", "/ab", "/a/x"]), "/a is not open; /ab is not its parent")
        XCTAssertThrowsError(try recover(["/", "/a", "/ab/x"]), "/ab is not open; /a is not its parent")
        XCTAssertThrowsError(try recover(["/", "/a/"]), "a path ending in /")
        XCTAssertThrowsError(try recover(["/", "a"]), "a path not starting with /")
        XCTAssertThrowsError(try recover(["/", "/a", "/a//x"]), "an empty segment: its parent /a/ is no node")
        let unsorted = try recover(["/", "/b", "/b/é", "/b/e", "/a"])
        XCTAssertEqual(try unsorted.children("/").names, ["a", "b"])
        XCTAssertEqual(try unsorted.children("/b").names, ["e", "é"])
        XCTAssertNotNil(try unsorted.exists("/b/é"))
    }

    func testReplayRefusesInconsistentRecords() {
        let orphan = NamespaceRecord.create(transaction: 1, wallMilliseconds: 0, path: "/no/parent", data: [],
                                            kind: .persistent, parentChildrenVersion: 1).encode()
        XCTAssertThrowsError(try Namespace(configuration: makeConfiguration(), now: start, recoveringFrom: nil, records: [orphan]))
        let missing = NamespaceRecord.delete(transaction: 1, path: "/x", parentChildrenVersion: 1).encode()
        XCTAssertThrowsError(try Namespace(configuration: makeConfiguration(), now: start, recoveringFrom: nil, records: [missing]))
    }

    /// Crash simulation: everything but the log is lost. Every id handed out after recovery must be
    /// above every id handed out before, though grants (ephemeral creates) logged nothing themselves.
    func testCountersAfterCrashExceedEverythingHandedOut() throws {
        let configuration = makeConfiguration { $0.transactionReserveAhead = 50; $0.sequenceReserveAhead = 7 }
        let live = Namespace(configuration: configuration, now: start, random: SeededGenerator(seed: 3))
        let session = try live.openSession(timeoutMilliseconds: 0, now: start)
        try live.create("/locks", data: [], mode: .container, session: 0, now: start)
        var log = persistedBytes(live.takeOutputs())
        var highestTransaction: UInt64 = 0
        var highestSequence = ""
        for round in 0..<123 {
            let waiter = try live.create("/locks/w-", data: [], mode: .ephemeralSequential, session: session.id, now: start)
            highestTransaction = max(highestTransaction, waiter.stat.createdTransaction)
            highestSequence = max(highestSequence, waiter.path)
            if round % 2 == 0 { try live.delete(waiter.path, expectedVersion: -1, now: start) }
            log += persistedBytes(live.takeOutputs())
        }
        highestTransaction = max(highestTransaction, live.transactionCurrent)
        // Far fewer records than grants: one reservation per batch.
        XCTAssertLessThan(log.count, 123 / 7 + 123 * 2 / 50 + 4)

        let recovered = try Namespace(configuration: configuration, now: start, random: SeededGenerator(seed: 4),
                                      recoveringFrom: nil, records: log)
        let newSession = try recovered.openSession(timeoutMilliseconds: 0, now: start)
        let waiter = try recovered.create("/locks/w-", data: [], mode: .ephemeralSequential, session: newSession.id, now: start)
        XCTAssertGreaterThan(waiter.stat.createdTransaction, highestTransaction)
        XCTAssertGreaterThan(waiter.path, highestSequence)
        // And again from a snapshot plus the log written after it.
        let snapshot = recovered.snapshot().serialize()
        var laterLog = persistedBytes(recovered.takeOutputs())
        var laterHighest = waiter.stat.createdTransaction
        for _ in 0..<60 {
            laterHighest = try recovered.create("/locks/w-", data: [], mode: .ephemeralSequential, session: newSession.id,
                                                now: start).stat.createdTransaction
            laterLog += persistedBytes(recovered.takeOutputs())
        }
        let again = try Namespace(configuration: configuration, now: start, recoveringFrom: snapshot, records: laterLog)
        let third = try again.openSession(timeoutMilliseconds: 0, now: start)
        XCTAssertGreaterThan(try again.create("/x", data: [], mode: .ephemeral, session: third.id, now: start).stat.createdTransaction,
                             laterHighest)
    }

    /// Under one lock's node every waiter takes a sequence number and two zxids, and each new highest
    /// mark costs the server a MARKS write (4 fsyncs on the loop): the default reservations cover
    /// thousands of grants with one record and one mark each.
    func testDefaultReservationsCoverThousandsOfWaiters() throws {
        let namespace = Namespace(configuration: NamespaceConfiguration(), now: start)
        let session = try namespace.openSession(timeoutMilliseconds: 0, now: start)
        try namespace.create("/locks", data: [], mode: .container, session: 0, now: start)
        _ = namespace.takeOutputs()
        let transactionMark = namespace.counterMarks.transactions
        var reservations = 0, sequenceMarks: Set<UInt64> = [], transactionMarks: Set<UInt64> = []
        for _ in 0..<5_000 {
            let waiter = try namespace.create("/locks/x-", data: [], mode: .ephemeralSequential, session: session.id, now: start)
            try namespace.delete(waiter.path, expectedVersion: -1, now: start)
            reservations += records(namespace.takeOutputs()).count {
                switch $0 { case .reserveSequence, .reserveTransactions: true; default: false }
            }
            sequenceMarks.insert(namespace.counterMarks.sequences)
            transactionMarks.insert(namespace.counterMarks.transactions)
        }
        XCTAssertEqual(reservations, 1, "the first waiter's sequence reservation only")
        XCTAssertEqual(sequenceMarks, [NamespaceConfiguration().sequenceReserveAhead])
        XCTAssertEqual(transactionMarks, [transactionMark])
    }

    func testRecoveredEmptyContainersAreSweptAfterGrace() throws {
        let live = makeNamespace()
        let session = try live.openSession(timeoutMilliseconds: 0, now: start)
        try live.create("/locks", data: [], mode: .container, session: 0, now: start)
        try live.create("/locks/a", data: [], mode: .container, session: 0, now: start)
        try live.create("/locks/a/w", data: [], mode: .ephemeral, session: session.id, now: start)
        let log = persistedBytes(live.takeOutputs())
        let restart = start.advanced(by: 60_000)
        let recovered = try Namespace(configuration: makeConfiguration(), now: restart, recoveringFrom: nil, records: log)
        XCTAssertNotNil(try recovered.exists("/locks/a"))
        recovered.tick(now: restart.advanced(by: 999))
        XCTAssertNotNil(try recovered.exists("/locks/a"))
        recovered.tick(now: restart.advanced(by: 1_000))
        XCTAssertNil(try recovered.exists("/locks/a"))
        recovered.tick(now: restart.advanced(by: 2_000))
        XCTAssertNil(try recovered.exists("/locks"))
    }
}
