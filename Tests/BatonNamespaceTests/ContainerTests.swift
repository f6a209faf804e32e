import BatonNamespace
import BatonProtocol
import XCTest

final class ContainerTests: XCTestCase {
    let start = Time(milliseconds: 50_000)

    func testEmptiedContainerIsSweptAfterGraceNotBefore() throws {
        let namespace = makeNamespace { $0.containerGraceMilliseconds = 1_000 }
        let session = try namespace.openSession(timeoutMilliseconds: 600_000, now: start)
        try namespace.create("/locks", data: [], mode: .container, session: 0, now: start)
        let waiter = try namespace.create("/locks/w-", data: [], mode: .ephemeralSequential, session: session.id, now: start)
        _ = try namespace.exists("/locks", watcher: .session(7))
        _ = try namespace.children("/", watcher: .session(8))
        _ = namespace.takeOutputs()

        let emptied = start.advanced(by: 100)
        try namespace.delete(waiter.path, expectedVersion: -1, now: emptied)
        XCTAssertEqual(namespace.nextDeadlineMilliseconds, min(emptied.monotonicMilliseconds + 1_000,
                                                               namespace.session(session.id)!.deadlineMilliseconds))
        namespace.tick(now: emptied.advanced(by: 999))
        XCTAssertNotNil(try namespace.exists("/locks"), "not before the grace")
        _ = namespace.takeOutputs()
        namespace.tick(now: emptied.advanced(by: 1_000))
        XCTAssertNil(try namespace.exists("/locks"))
        let outputs = namespace.takeOutputs()
        XCTAssertEqual(watchEvents(outputs), [.watch(.session(7), .deleted, path: "/locks"),
                                              .watch(.session(8), .childrenChanged, path: "/")])
        guard case .sweepContainer(_, let path, _)? = records(outputs).last else { return XCTFail("\(records(outputs))") }
        XCTAssertEqual(path, "/locks")
    }

    /// A single delete settles the schedule itself (no lookup of the parent): only the one that
    /// leaves a container childless schedules it; a sibling left or a persistent parent does not.
    func testOnlyADeleteThatEmptiesAContainerSchedulesItsSweep() throws {
        let namespace = makeNamespace { $0.containerGraceMilliseconds = 1_000 }
        let session = try namespace.openSession(timeoutMilliseconds: 600_000, now: start)
        let sessionDeadline = namespace.session(session.id)!.deadlineMilliseconds
        try namespace.create("/locks", data: [], mode: .container, session: 0, now: start)
        try namespace.create("/plain", data: [], mode: .persistent, session: 0, now: start)
        let first = try namespace.create("/locks/w-", data: [], mode: .ephemeralSequential, session: session.id, now: start)
        let second = try namespace.create("/locks/w-", data: [], mode: .ephemeralSequential, session: session.id, now: start)
        try namespace.create("/plain/x", data: [], mode: .ephemeral, session: session.id, now: start)

        try namespace.delete(first.path, expectedVersion: -1, now: start.advanced(by: 100))
        try namespace.delete("/plain/x", expectedVersion: -1, now: start.advanced(by: 200))
        XCTAssertEqual(namespace.nextDeadlineMilliseconds, sessionDeadline, "a child left, or not a container")
        try namespace.delete(second.path, expectedVersion: -1, now: start.advanced(by: 300))
        XCTAssertEqual(namespace.nextDeadlineMilliseconds, start.advanced(by: 1_300).monotonicMilliseconds)
        namespace.tick(now: start.advanced(by: 1_300))
        XCTAssertNil(try namespace.exists("/locks"))
        XCTAssertNotNil(try namespace.exists("/plain"))
    }

    func testReuseWithinGraceKeepsTheContainerAndLogsNothing() throws {
        let namespace = makeNamespace { $0.containerGraceMilliseconds = 1_000 }
        let session = try namespace.openSession(timeoutMilliseconds: 600_000, now: start)
        try namespace.create("/locks", data: [], mode: .container, session: 0, now: start)
        _ = namespace.takeOutputs()
        var now = start
        for _ in 0..<20 {
            let waiter = try namespace.create("/locks/w-", data: [], mode: .ephemeralSequential, session: session.id, now: now)
            now = now.advanced(by: 600)
            namespace.tick(now: now)
            try namespace.delete(waiter.path, expectedVersion: -1, now: now)
            now = now.advanced(by: 600)
            namespace.tick(now: now)
            XCTAssertNotNil(try namespace.exists("/locks"))
        }
        // Only the sequence reservation (one per `sequenceReserveAhead` children) and no create/delete of the directory.
        let logged = records(namespace.takeOutputs())
        XCTAssertFalse(logged.contains { if case .sweepContainer = $0 { true } else { false } })
        XCTAssertFalse(logged.contains { if case .create = $0 { true } else { false } })
    }

    /// The schedule is lazy (a refill does not cancel it): a container refilled and emptied again
    /// is swept a grace after its last emptying, in deadline order with the others.
    func testRefilledContainerIsSweptAGraceAfterItsLastEmptying() throws {
        let namespace = makeNamespace { $0.containerGraceMilliseconds = 1_000 }
        let session = try namespace.openSession(timeoutMilliseconds: 600_000, now: start)
        try namespace.create("/a", data: [], mode: .container, session: 0, now: start)
        try namespace.create("/b", data: [], mode: .container, session: 0, now: start)
        let first = try namespace.create("/a/w-", data: [], mode: .ephemeralSequential, session: session.id, now: start)
        try namespace.delete(first.path, expectedVersion: -1, now: start)  // /a: due at +1,000
        let other = try namespace.create("/b/w-", data: [], mode: .ephemeralSequential, session: session.id, now: start)
        try namespace.delete(other.path, expectedVersion: -1, now: start.advanced(by: 100))  // /b: due at +1,100
        let again = try namespace.create("/a/w-", data: [], mode: .ephemeralSequential, session: session.id,
                                         now: start.advanced(by: 200))
        try namespace.delete(again.path, expectedVersion: -1, now: start.advanced(by: 500))  // /a: now due at +1,500

        namespace.tick(now: start.advanced(by: 1_000))
        XCTAssertNotNil(try namespace.exists("/a"), "emptied again at +500: its grace runs to +1,500")
        XCTAssertEqual(namespace.nextDeadlineMilliseconds, start.monotonicMilliseconds + 1_100)
        namespace.tick(now: start.advanced(by: 1_100))
        XCTAssertNil(try namespace.exists("/b"))
        XCTAssertNotNil(try namespace.exists("/a"))
        namespace.tick(now: start.advanced(by: 1_499))
        XCTAssertNotNil(try namespace.exists("/a"))
        namespace.tick(now: start.advanced(by: 1_500))
        XCTAssertNil(try namespace.exists("/a"))
        XCTAssertEqual(namespace.containersAwaitingSweep, 0)
    }

    /// The container emptied last keeps its newest deadline aside (`lastSweepDeadline`: no hash per
    /// release of a lock taken in a loop): the sweep, the count and another container's schedule see it.
    func testAContainerEmptiedAgainAndAgainIsSweptAGraceAfterItsLastEmptying() throws {
        let namespace = makeNamespace { $0.containerGraceMilliseconds = 1_000 }
        let session = try namespace.openSession(timeoutMilliseconds: 600_000, now: start)
        try namespace.create("/a", data: [], mode: .container, session: 0, now: start)
        try namespace.create("/b", data: [], mode: .container, session: 0, now: start)
        for round: UInt64 in 0..<5 {
            let waiter = try namespace.create("/a/w-", data: [], mode: .ephemeralSequential, session: session.id,
                                              now: start.advanced(by: 100 * round))
            try namespace.delete(waiter.path, expectedVersion: -1, now: start.advanced(by: 100 * round + 50))
        }
        // /a: last emptied at +450, due at +1,450.
        XCTAssertEqual(namespace.containersAwaitingSweep, 1)
        namespace.tick(now: start.advanced(by: 1_050))  // its queue entry, from the first emptying
        XCTAssertNotNil(try namespace.exists("/a"), "emptied again at +450")
        XCTAssertEqual(namespace.nextDeadlineMilliseconds, start.monotonicMilliseconds + 1_450)
        for round: UInt64 in 0..<3 {
            let waiter = try namespace.create("/a/w-", data: [], mode: .ephemeralSequential, session: session.id,
                                              now: start.advanced(by: 1_100 + 100 * round))
            try namespace.delete(waiter.path, expectedVersion: -1, now: start.advanced(by: 1_150 + 100 * round))
        }
        // /a: due at +2,350; then /b, emptied at +1,400, due at +2,400.
        let other = try namespace.create("/b/w-", data: [], mode: .ephemeralSequential, session: session.id, now: start.advanced(by: 1_300))
        try namespace.delete(other.path, expectedVersion: -1, now: start.advanced(by: 1_400))
        XCTAssertEqual(namespace.containersAwaitingSweep, 2)
        namespace.tick(now: start.advanced(by: 2_349))
        XCTAssertNotNil(try namespace.exists("/a"))
        namespace.tick(now: start.advanced(by: 2_350))
        XCTAssertNil(try namespace.exists("/a"))
        XCTAssertNotNil(try namespace.exists("/b"))
        namespace.tick(now: start.advanced(by: 2_400))
        XCTAssertNil(try namespace.exists("/b"))
        XCTAssertEqual(namespace.containersAwaitingSweep, 0)
    }

    /// A container refilled when its deadline comes keeps its children and leaves the schedule.
    func testContainerFilledAtItsDeadlineIsKeptAndUnscheduled() throws {
        let namespace = makeNamespace { $0.containerGraceMilliseconds = 1_000 }
        let session = try namespace.openSession(timeoutMilliseconds: 600_000, now: start)
        try namespace.create("/a", data: [], mode: .container, session: 0, now: start)
        let first = try namespace.create("/a/w-", data: [], mode: .ephemeralSequential, session: session.id, now: start)
        try namespace.delete(first.path, expectedVersion: -1, now: start)
        _ = try namespace.create("/a/w-", data: [], mode: .ephemeralSequential, session: session.id, now: start.advanced(by: 10))
        XCTAssertEqual(namespace.containersAwaitingSweep, 1, "a refill does not cancel: the sweep drops the entry")
        namespace.tick(now: start.advanced(by: 1_000))
        XCTAssertNotNil(try namespace.exists("/a"))
        XCTAssertEqual(namespace.containersAwaitingSweep, 0)
    }

    func testNeverUsedContainerIsKept() throws {
        let namespace = makeNamespace { $0.containerGraceMilliseconds = 1_000 }
        try namespace.create("/c", data: [], mode: .container, session: 0, now: start)
        namespace.tick(now: start.advanced(by: 1_000_000))
        XCTAssertNotNil(try namespace.exists("/c"))
        XCTAssertNil(namespace.nextDeadlineMilliseconds)
    }

    func testSweepCascadesToParentContainer() throws {
        let namespace = makeNamespace { $0.containerGraceMilliseconds = 1_000 }
        try namespace.create("/outer", data: [], mode: .container, session: 0, now: start)
        try namespace.create("/outer/inner", data: [], mode: .container, session: 0, now: start)
        try namespace.create("/outer/inner/x", data: [], mode: .persistent, session: 0, now: start)
        try namespace.delete("/outer/inner/x", expectedVersion: -1, now: start)
        namespace.tick(now: start.advanced(by: 1_000))
        XCTAssertNil(try namespace.exists("/outer/inner"))
        XCTAssertNotNil(try namespace.exists("/outer"), "the parent starts its own grace")
        namespace.tick(now: start.advanced(by: 2_000))
        XCTAssertNil(try namespace.exists("/outer"))
    }

    func testPersistentNodesAreNeverSwept() throws {
        let namespace = makeNamespace { $0.containerGraceMilliseconds = 1_000 }
        try namespace.create("/p", data: [], mode: .persistent, session: 0, now: start)
        try namespace.create("/p/x", data: [], mode: .persistent, session: 0, now: start)
        try namespace.delete("/p/x", expectedVersion: -1, now: start)
        namespace.tick(now: start.advanced(by: 10_000))
        XCTAssertNotNil(try namespace.exists("/p"))
    }
}
