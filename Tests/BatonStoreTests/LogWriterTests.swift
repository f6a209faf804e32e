import Dispatch
import XCTest
@testable import BatonStore

/// `batch` with the log writer thread (Store+Writer.swift): one batch in flight, the next one takes
/// what was appended meanwhile; anything that touches the segment from the loop waits for it.
final class LogWriterTests: StoreTestCase {
    private func openWithWriter(_ configuration: StoreConfiguration? = nil) throws -> (Store, DispatchSemaphore) {
        let (store, _) = try open(configuration)
        let synced = DispatchSemaphore(value: 0)
        store.startWriter { synced.signal() }
        return (store, synced)
    }

    func testOneBatchInFlightAndTheNextTakesWhatWasAppendedMeanwhile() throws {
        let (store, synced) = try openWithWriter()
        defer { try? store.close() }
        let start = store.metrics
        for index in 1...3 { try store.append(payload(index)) }
        XCTAssertTrue(try store.startCommit())
        XCTAssertTrue(store.isSyncing)
        try store.append(payload(4))
        XCTAssertFalse(try store.startCommit(), "one batch at a time")
        XCTAssertEqual(synced.wait(timeout: .now() + 10), .success)
        XCTAssertTrue(try store.finishCommit())
        XCTAssertFalse(try store.finishCommit(), "taken once")
        XCTAssertEqual(store.committedLSN, 3, "record 4 came after the batch was handed over")
        XCTAssertTrue(store.needsCommit)
        XCTAssertTrue(try store.startCommit())
        XCTAssertEqual(synced.wait(timeout: .now() + 10), .success)
        XCTAssertTrue(try store.finishCommit())
        XCTAssertEqual(store.committedLSN, 4)
        XCTAssertFalse(store.needsCommit)
        XCTAssertEqual(store.metrics.fsyncCount, start.fsyncCount + 2, "one fsync per batch")
    }

    /// A batch in flight when the store is dropped (kill -9) or closed: what it held is on disk
    /// once it completes, and a close waits for it.
    func testCloseWaitsForTheBatchInFlightAndRecoveryHasEverything() throws {
        let (store, _) = try openWithWriter()
        for index in 1...50 { try store.append(payload(index)) }
        XCTAssertTrue(try store.startCommit())
        for index in 51...60 { try store.append(payload(index)) }
        try store.close()
        let (reopened, recovery) = try open()
        defer { try? reopened.close() }
        XCTAssertEqual(recovery.records.map(\.payload), (1...60).map(payload))
    }

    /// A segment roll while a batch is in flight waits for it: the old segment ends clean and the
    /// records land in order.
    func testASegmentRollWaitsForTheBatchInFlight() throws {
        let (store, synced) = try openWithWriter(configuration(segmentBytesMax: 300))
        for index in 1...40 {
            try store.append(payload(index))
            if index % 3 == 0 { try store.startCommit() }
            if synced.wait(timeout: .now()) == .success { try store.finishCommit() }
        }
        try store.commit()
        XCTAssertEqual(store.committedLSN, 40)
        XCTAssertGreaterThan(try segmentNames().count, 3)
        try store.close()
        let (reopened, recovery) = try open()
        defer { try? reopened.close() }
        XCTAssertEqual(recovery.records.map(\.payload), (1...40).map(payload))
    }
}
