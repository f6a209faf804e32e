import BatonNamespace
import BatonProtocol
import XCTest

/// While the log cannot be written (issue 8, item 6) the namespace refuses every change that would
/// be logged, leaving no trace, and lets everything else go on; and counters raised from marks kept
/// outside the log restart above them (item 5).
final class WriteRefusalTests: XCTestCase {
    let start = Time(monotonicMilliseconds: 1_000, wallMilliseconds: 1_700_000_000_000)
    let refusal = ReplyError(.storageFull, "the data directory is full")

    func testChangesThatWouldBeLoggedAreRefusedAndLeaveNoTrace() throws {
        let namespace = Namespace(configuration: NamespaceConfiguration(), now: start)
        let session = try namespace.openSession(timeoutMilliseconds: 0, now: start)
        try namespace.create("/app", data: bytes("v0"), mode: .persistent, session: 0, now: start)
        try namespace.create("/locks", data: [], mode: .container, session: 0, now: start)
        try namespace.create("/locks/w-", data: [], mode: .ephemeralSequential, session: session.id, now: start)
        _ = namespace.takeOutputs()
        let watcher = Watcher.internal(1)
        _ = try namespace.get("/app", watcher: watcher)
        let before = namespace.snapshot().serialize()
        let transaction = namespace.transactionCurrent

        namespace.writeRefusal = refusal
        XCTAssertThrowsError(try namespace.create("/new", data: [], mode: .persistent, session: 0, now: start)) {
            XCTAssertEqual($0 as? ReplyError, self.refusal)
        }
        XCTAssertThrowsError(try namespace.set("/app", data: bytes("v1"), expectedVersion: -1, now: start)) {
            XCTAssertEqual($0 as? ReplyError, self.refusal)
        }
        XCTAssertThrowsError(try namespace.create("/app/s-", data: [], mode: .persistentSequential, session: 0, now: start))
        XCTAssertThrowsError(try namespace.multi([.create(path: "/m", data: [], mode: .persistent)], session: 0, now: start)) {
            XCTAssertEqual(($0 as? MultiFailure)?.error, self.refusal)
        }
        // A first sequential child needs a sequence reservation, which is logged: refused too.
        XCTAssertThrowsError(try namespace.create("/app/e-", data: [], mode: .ephemeralSequential, session: session.id, now: start))
        XCTAssertEqual(namespace.snapshot().serialize(), before, "nothing changed")
        XCTAssertEqual(namespace.transactionCurrent, transaction, "no zxid spent")
        XCTAssertTrue(namespace.takeOutputs().isEmpty, "no record, no watch fired")

        // What logs nothing goes on: reads, an ephemeral child within the reserved counters, its delete.
        XCTAssertEqual(try namespace.get("/app").data, bytes("v0"))
        let waiter = try namespace.create("/locks/w-", data: [], mode: .ephemeralSequential, session: session.id, now: start)
        XCTAssertEqual(waiter.path, "/locks/w-0000000001")
        try namespace.delete(waiter.path, expectedVersion: -1, now: start)
        XCTAssertTrue(persistedBytes(namespace.takeOutputs()).isEmpty)

        // A session's end is never refused.
        namespace.closeSession(session.id, now: start)
        XCTAssertNil(namespace.node(at: "/locks/w-0000000000"))

        namespace.writeRefusal = nil
        try namespace.create("/new", data: [], mode: .persistent, session: 0, now: start)
        XCTAssertEqual(persistedBytes(namespace.takeOutputs()).count, 1)
    }

    func testContainerSweepsWaitWhileWritesAreRefused() throws {
        var configuration = NamespaceConfiguration()
        configuration.containerGraceMilliseconds = 10
        let namespace = Namespace(configuration: configuration, now: start)
        let session = try namespace.openSession(timeoutMilliseconds: 0, now: start)
        try namespace.create("/c", data: [], mode: .container, session: 0, now: start)
        let child = try namespace.create("/c/x", data: [], mode: .ephemeral, session: session.id, now: start)
        try namespace.delete(child.path, expectedVersion: -1, now: start)
        _ = namespace.takeOutputs()
        namespace.writeRefusal = refusal
        let later = start.advanced(by: 100)
        XCTAssertNil(namespace.nextDeadlineMilliseconds.flatMap { $0 <= later.monotonicMilliseconds ? $0 : nil },
                     "no timer for a sweep that cannot run")
        namespace.sweepContainers(now: later)
        XCTAssertNotNil(namespace.node(at: "/c"))
        namespace.writeRefusal = nil
        namespace.sweepContainers(now: later)
        XCTAssertNil(namespace.node(at: "/c"))
    }

    func testRaisedCountersRestartAboveTheMarks() throws {
        let namespace = Namespace(configuration: NamespaceConfiguration(), now: start)
        try namespace.create("/p", data: [], mode: .persistent, session: 0, now: start)
        try namespace.create("/p/s-", data: [], mode: .persistentSequential, session: 0, now: start)
        XCTAssertEqual(namespace.counterMarks.sequences, NamespaceConfiguration().sequenceReserveAhead)
        let transactions = namespace.counterMarks.transactions
        namespace.raiseCounters(transactions: transactions + 50_000, sequences: nil)
        let created = try namespace.create("/q", data: [], mode: .persistent, session: 0, now: start)
        XCTAssertGreaterThanOrEqual(created.stat.createdTransaction, transactions + 50_000)
        XCTAssertGreaterThan(namespace.counterMarks.transactions, transactions)
        // Sequence marks lift every parent (a repair may have cut a parent's own reservation).
        namespace.raiseCounters(transactions: 0, sequences: 7_000)
        XCTAssertEqual(try namespace.create("/p/s-", data: [], mode: .persistentSequential, session: 0, now: start).path,
                       "/p/s-0000007000")
        XCTAssertEqual(try namespace.create("/q/s-", data: [], mode: .persistentSequential, session: 0, now: start).path,
                       "/q/s-0000007000")
    }
}
