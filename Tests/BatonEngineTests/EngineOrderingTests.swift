@testable import BatonEngine
import BatonNamespace
import BatonProtocol
import XCTest
import BatonTestSupport

final class EngineOrderingTests: XCTestCase {
    /// ZooKeeper's guarantee: a client sees the watch event before the reply that shows the new data.
    func testWatchEventComesBeforeTheReplyThatTriggeredIt() {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        _ = harness.call(.create(path: "/a", data: [], mode: .persistent), on: 1)
        _ = harness.call(.get(path: "/a", watch: true), on: 1)
        _ = harness.call(.get(path: "/a", watch: true), on: 2)
        let (requestID, outputs) = harness.send(.set(path: "/a", data: [1], expectedVersion: -1), on: 1)
        XCTAssertEqual(outputs.count, 4)
        guard case .persist = outputs[0] else { return XCTFail("the record comes first: \(outputs)") }
        let sends = Array(outputs.dropFirst())
        XCTAssertTrue(sends.contains(.send(1, .event(.watch(type: .dataChanged, path: "/a")))))
        XCTAssertTrue(sends.contains(.send(2, .event(.watch(type: .dataChanged, path: "/a")))))
        guard case .send(1, .reply(let reply)) = sends.last else { return XCTFail("the reply comes last: \(outputs)") }
        XCTAssertEqual(reply.requestID, requestID)
    }

    func testPersistRecordsPrecedeTheirReplies() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        let (_, outputs) = harness.send(.create(path: "/p", data: [7], mode: .persistent), on: 1)
        guard outputs.count >= 2, case .send(1, .reply) = outputs.last else { return XCTFail("\(outputs)") }
        let records = outputs.dropLast().compactMap { output -> NamespaceRecord? in
            if case .persist(let bytes) = output { return try? NamespaceRecord.decode(bytes) }
            return nil
        }
        XCTAssertEqual(records.count, outputs.count - 1, "everything before the reply is a record")
        XCTAssertTrue(records.contains { if case .create(_, _, "/p", [7], .persistent, _) = $0 { true } else { false } })
        // Reads and ephemeral writes log nothing (beyond counter reservations).
        let (_, readOutputs) = harness.send(.get(path: "/p", watch: false), on: 1)
        XCTAssertEqual(readOutputs.count, 1)
    }

    func testEventsOfOtherSessionsPrecedeTheWritersReply() {
        let harness = EngineHarness()
        harness.openSession(1)
        harness.openSession(2)
        _ = harness.call(.exists(path: "/x", watch: true), on: 2)
        let (_, outputs) = harness.send(.create(path: "/x", data: [], mode: .persistent), on: 1)
        let eventIndex = outputs.firstIndex(of: .send(2, .event(.watch(type: .created, path: "/x"))))
        let replyIndex = outputs.firstIndex { if case .send(1, .reply) = $0 { true } else { false } }
        XCTAssertNotNil(eventIndex)
        XCTAssertNotNil(replyIndex)
        if let eventIndex, let replyIndex { XCTAssertLessThan(eventIndex, replyIndex) }
    }

    func testContainerSweepRunsOnTick() {
        let harness = EngineHarness()
        harness.openSession(1, timeoutMilliseconds: 60_000)
        _ = harness.call(.create(path: "/locks", data: [], mode: .container), on: 1)
        _ = harness.call(.create(path: "/locks/e", data: [], mode: .ephemeral), on: 1)
        _ = harness.call(.delete(path: "/locks/e", expectedVersion: -1), on: 1)
        XCTAssertEqual(harness.engine.nextDeadlineMilliseconds, harness.now.monotonicMilliseconds + 1_000)
        harness.advance(1_000)
        let outputs = harness.engine.takeOutputs()
        XCTAssertEqual(outputs.count, 1)
        guard case .persist(let bytes) = outputs.first, case .sweepContainer(_, "/locks", _)? = try? NamespaceRecord.decode(bytes)
        else { return XCTFail("\(outputs)") }
    }

    func testRecoveryFromPersistedOutputs() throws {
        let harness = EngineHarness()
        harness.openSession(1)
        var log: [[UInt8]] = []
        for request: Request in [.create(path: "/app", data: [1], mode: .persistent),
                                 .create(path: "/app/s-", data: [], mode: .persistentSequential),
                                 .set(path: "/app", data: [2], expectedVersion: 0),
                                 .create(path: "/app/e", data: [], mode: .ephemeral)] {
            for output in harness.send(request, on: 1).outputs {
                if case .persist(let bytes) = output { log.append(bytes) }
            }
        }
        let lastTransaction = harness.engine.namespace.transactionCurrent
        let snapshot = harness.engine.snapshotSource().serialize()
        let fromLog = try Engine(configuration: harness.engine.configuration, now: harness.now,
                                 random: SeededGenerator(seed: 7), recoveringFrom: nil, records: log)
        let fromSnapshot = try Engine(configuration: harness.engine.configuration, now: harness.now,
                                      random: SeededGenerator(seed: 8), recoveringFrom: snapshot, records: [[UInt8]]())
        for engine in [fromLog, fromSnapshot] {
            XCTAssertEqual(try engine.namespace.get("/app").data, [2])
            XCTAssertEqual(try engine.namespace.children("/app").names, ["s-0000000000"])
            XCTAssertEqual(engine.sessionCount, 0)
            XCTAssertEqual(try engine.namespace.exists("/app/e"), nil, "ephemerals do not survive a restart")
            // Every id handed out after recovery is above every id handed out before.
            let created = try engine.namespace.create("/z", data: [], mode: .persistent, session: 0, now: harness.now)
            XCTAssertGreaterThan(created.stat.createdTransaction, lastTransaction)
        }
        XCTAssertThrowsError(try Engine(configuration: harness.engine.configuration, now: harness.now,
                                        recoveringFrom: [9, 9, 9], records: [[UInt8]]()))
    }
}
