import Foundation
import XCTest
@testable import BatonStore

final class SnapshotTests: StoreTestCase {
    func state(_ lsn: LogSequenceNumber) -> [UInt8] {
        Array("namespace state after \(lsn)".utf8) + [UInt8](repeating: UInt8(lsn % 256), count: 100)
    }

    /// Appends payloads for `range` (LSN n carries payload(n)) and commits.
    func append(_ store: Store, _ range: ClosedRange<Int>) throws {
        for index in range { XCTAssertEqual(try store.append(payload(index)), LogSequenceNumber(index)) }
        try store.commit()
    }

    func snapshot(_ store: Store, at lsn: LogSequenceNumber) throws -> Store.PruneOutcome {
        try store.snapshotWriter.writeSnapshot(lsn: lsn, bytes: state(lsn))
        return try store.pruneBefore(snapshotLSN: lsn)
    }

    func testRecoveryLoadsTheNewestSnapshotAndTheRecordsAfterIt() throws {
        let (store, _) = try open()
        try append(store, 1...10)
        _ = try snapshot(store, at: 10)
        try append(store, 11...15)
        try store.close()

        let (reopened, recovery) = try open()
        defer { try? reopened.close() }
        XCTAssertEqual(recovery.snapshot, RecoveredSnapshot(lsn: 10, bytes: state(10)))
        assertRecords(recovery, 11...15)
        XCTAssertEqual(recovery.nextLSN, 16)
        // Header (32 bytes) then the namespace's bytes, as documented.
        let file = try read(snapshotName(10))
        XCTAssertEqual(Array(file[0..<8]), Array("BATONSNP".utf8))
        XCTAssertEqual(file[8], 2)
        XCTAssertEqual(Array(file[32...]), state(10))
    }

    func testCorruptNewestSnapshotFallsBackToThePreviousOne() throws {
        let (store, _) = try open()
        try append(store, 1...10)
        _ = try snapshot(store, at: 10)
        try append(store, 11...20)
        _ = try snapshot(store, at: 20)
        try append(store, 21...30)
        try store.close()
        try flipBit(snapshotName(20), at: 32 + 5)

        let (reopened, recovery) = try open()
        defer { try? reopened.close() }
        XCTAssertEqual(recovery.snapshot, RecoveredSnapshot(lsn: 10, bytes: state(10)))
        assertRecords(recovery, 11...30)
        XCTAssertEqual(recovery.corruptSnapshots, [snapshotName(20)])
        XCTAssertTrue(try fileNames().contains(snapshotName(20) + ".corrupt"))
        XCTAssertFalse(try fileNames().contains(snapshotName(20)))
        XCTAssertTrue(captured.warnings.contains { $0.contains(snapshotName(20)) }, "\(captured.warnings)")
    }

    /// A snapshot streamed in pieces (the header, with the payload's length and CRC, written last)
    /// is the file the whole payload gives: the same bytes, the CRC recovery checks.
    func testASnapshotStreamedInPiecesIsTheSameFileAsOneWrittenWhole() throws {
        let (store, _) = try open()
        try append(store, 1...2)
        let whole = state(2) + [UInt8](repeating: 7, count: 5_000)
        var pieces: [[UInt8]] = []
        for start in stride(from: 0, to: whole.count, by: 1_000) { pieces.append(Array(whole[start..<min(start + 1_000, whole.count)])) }
        let size = try store.snapshotWriter.writeSnapshot(lsn: 2) { emit in
            for piece in pieces { try emit(piece) }
        }
        XCTAssertEqual(size, 32 + whole.count)
        let streamed = try read(snapshotName(2))
        // Length and CRC as if computed in one pass over bytes 8..<28 and the whole payload.
        XCTAssertEqual(StoreFormat.readUInt64(streamed, at: 20), UInt64(whole.count))
        XCTAssertEqual(StoreFormat.readUInt32(streamed, at: 28),
                       StoreFormat.checksum(whole[...], seed: StoreFormat.checksum(streamed[8..<28])))
        XCTAssertEqual(Array(streamed[32...]), whole)
        try store.close()

        let (reopened, recovery) = try open()
        defer { try? reopened.close() }
        XCTAssertEqual(recovery.snapshot, RecoveredSnapshot(lsn: 2, bytes: whole))
        XCTAssertTrue(recovery.corruptSnapshots.isEmpty)
    }

    /// A payload that fails part-way leaves no snapshot and no temporary file: the previous
    /// snapshot stands, and the part written is never read as a snapshot.
    func testASnapshotWhosePayloadFailsPartWayLeavesNothing() throws {
        struct Interrupted: Error {}
        let (store, _) = try open()
        try append(store, 1...5)
        _ = try snapshot(store, at: 3)
        XCTAssertThrowsError(try store.snapshotWriter.writeSnapshot(lsn: 5) { emit in
            try emit(state(5))
            throw Interrupted()
        }) { XCTAssertTrue($0 is Interrupted, "\($0)") }
        XCTAssertEqual(try fileNames().filter { $0.hasPrefix("snapshot-") }, [snapshotName(3)])
        try store.close()

        let (reopened, recovery) = try open()
        defer { try? reopened.close() }
        XCTAssertEqual(recovery.snapshot, RecoveredSnapshot(lsn: 3, bytes: state(3)))
        assertRecords(recovery, 4...5)
    }

    func testTruncatedAndHeaderDamagedSnapshotsAreCorrupt() throws {
        let (store, _) = try open()
        try append(store, 1...3)
        // Written without pruning, so all three stay.
        for lsn in 1...3 { try store.snapshotWriter.writeSnapshot(lsn: LogSequenceNumber(lsn), bytes: state(LogSequenceNumber(lsn))) }
        try store.close()
        let three = try read(snapshotName(3))
        try write(snapshotName(3), Array(three.dropLast(1)))  // the rename happened, the data did not
        try flipBit(snapshotName(2), at: 15)                  // the LSN in the header

        let (reopened, recovery) = try open()
        defer { try? reopened.close() }
        XCTAssertEqual(recovery.snapshot?.lsn, 1)
        XCTAssertEqual(recovery.corruptSnapshots, [snapshotName(3), snapshotName(2)])
        assertRecords(recovery, 2...3)
    }

    func testPruningKeepsWhatRecoveryNeeds() throws {
        let small = configuration(segmentBytesMax: 200)
        let (store, _) = try open(small)
        try append(store, 1...40)
        let segmentsAt40 = try segmentNames()

        // One snapshot: nothing may go, a corrupt snapshot would need the whole log.
        let first = try snapshot(store, at: 40)
        XCTAssertEqual(first, Store.PruneOutcome())
        XCTAssertEqual(try segmentNames(), segmentsAt40)

        try append(store, 41...80)
        let segmentsAt80 = try segmentNames()
        let firstLSNs = segmentsAt80.map { LogSequenceNumber($0.dropFirst(4).prefix(20))! }
        // Deletable: every segment whose successor starts at or before 41, the first record the
        // older kept snapshot (40) needs.
        let expectedDeleted = segmentsAt80.indices.dropLast().filter { firstLSNs[$0 + 1] <= 41 }.map { segmentsAt80[$0] }
        XCTAssertFalse(expectedDeleted.isEmpty)
        let second = try snapshot(store, at: 80)
        XCTAssertTrue(second.deletedSnapshots.isEmpty)
        XCTAssertEqual(second.deletedSegments, expectedDeleted)
        let remaining = try segmentNames()
        XCTAssertEqual(remaining, Array(segmentsAt80.dropFirst(expectedDeleted.count)))
        XCTAssertLessThanOrEqual(LogSequenceNumber(remaining[0].dropFirst(4).prefix(20))!, 41)
        XCTAssertEqual(store.metrics.segmentCount, remaining.count)

        try append(store, 81...100)
        let third = try snapshot(store, at: 100)
        XCTAssertEqual(third.deletedSnapshots, [snapshotName(40)])
        XCTAssertEqual(try fileNames().filter { $0.hasPrefix("snapshot-") }, [snapshotName(80), snapshotName(100)])
        try store.close()

        do {
            let (reopened, recovery) = try open(small)
            XCTAssertEqual(recovery.snapshot?.lsn, 100)
            XCTAssertTrue(recovery.records.isEmpty)
            XCTAssertEqual(recovery.nextLSN, 101)
            try reopened.close()
        }
        // The newest snapshot rots: the log kept since the older one is enough.
        try flipBit(snapshotName(100), at: 40)
        let (reopened, recovery) = try open(small)
        defer { try? reopened.close() }
        XCTAssertEqual(recovery.snapshot, RecoveredSnapshot(lsn: 80, bytes: state(80)))
        assertRecords(recovery, 81...100)
        XCTAssertNil(recovery.truncation)
    }

    func testPruneNeedsTheSnapshotOnDisk() throws {
        let (store, _) = try open()
        defer { try? store.close() }
        try append(store, 1...3)
        XCTAssertThrowsError(try store.pruneBefore(snapshotLSN: 3)) { error in
            XCTAssertEqual(error as? StoreError, .snapshotNotFound(lsn: 3))
        }
    }

    func testSnapshotWrittenOnABackgroundThreadWhileTheLoopAppends() throws {
        let (store, _) = try open(configuration(segmentBytesMax: 300))
        try append(store, 1...20)
        let writer = store.snapshotWriter
        let snapshotState = state(20)
        let done = DispatchSemaphore(value: 0)
        let failure = LockedBox<Error?>(nil)
        let thread = Thread {
            do { try writer.writeSnapshot(lsn: 20, bytes: snapshotState) } catch { failure.set(error) }
            done.signal()
        }
        thread.start()
        try append(store, 21...60)   // the loop does not wait for the snapshot
        done.wait()
        XCTAssertNil(failure.get())
        try store.pruneBefore(snapshotLSN: 20)
        try store.close()

        let (reopened, recovery) = try open(configuration(segmentBytesMax: 300))
        defer { try? reopened.close() }
        XCTAssertEqual(recovery.snapshot, RecoveredSnapshot(lsn: 20, bytes: snapshotState))
        assertRecords(recovery, 21...60)
    }

    func testSnapshotBeyondTheEndOfTheLog() throws {
        // With `none`, a power failure can lose the log's tail while a later snapshot survived.
        let (store, _) = try open()
        try append(store, 1...5)
        try store.snapshotWriter.writeSnapshot(lsn: 50, bytes: state(50))
        try store.close()

        do {
            let (reopened, recovery) = try open()
            XCTAssertEqual(recovery.snapshot?.lsn, 50)
            XCTAssertTrue(recovery.records.isEmpty)
            XCTAssertEqual(recovery.nextLSN, 51)
            XCTAssertEqual(try reopened.append([51]), 51)
            try reopened.close()
        }
        XCTAssertEqual(try segmentNames(), [segmentName(1), segmentName(51)])
        let (reopened, recovery) = try open()
        defer { try? reopened.close() }
        XCTAssertEqual(recovery.records.map(\.lsn), [51])
        XCTAssertEqual(recovery.nextLSN, 52)
    }
}

final class LockedBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func set(_ newValue: Value) { lock.lock(); value = newValue; lock.unlock() }
    func get() -> Value { lock.lock(); defer { lock.unlock() }; return value }
}
