import XCTest
@testable import BatonStore

/// Each policy's fsyncs, counted by the store itself (every fsync call increments `fsyncCount`).
final class FsyncPolicyTests: StoreTestCase {
    func testParsing() {
        XCTAssertEqual(FsyncPolicy(parsing: "always"), .always)
        XCTAssertEqual(FsyncPolicy(parsing: "batch"), .batch)
        XCTAssertEqual(FsyncPolicy(parsing: "none"), FsyncPolicy.none)
        XCTAssertNil(FsyncPolicy(parsing: "sometimes"))
        XCTAssertNil(FsyncPolicy(parsing: "Always"))
    }

    func testAlwaysFsyncsEveryAppendBeforeItReturns() throws {
        let (store, _) = try open(configuration(.always))
        defer { try? store.close() }
        let start = store.metrics
        for index in 1...5 {
            try store.append(payload(index))
            XCTAssertFalse(store.needsCommit)
            XCTAssertEqual(store.metrics.fsyncCount, start.fsyncCount + UInt64(index))
            XCTAssertEqual(store.metrics.durableLSN, LogSequenceNumber(index))
        }
        try store.commit()
        XCTAssertEqual(store.metrics.fsyncCount, start.fsyncCount + 5, "nothing left for commit")
    }

    func testBatchFsyncsOncePerCommit() throws {
        let (store, _) = try open(configuration(.batch))
        defer { try? store.close() }
        let start = store.metrics
        for index in 1...5 { try store.append(payload(index)) }
        XCTAssertEqual(store.metrics.fsyncCount, start.fsyncCount)
        XCTAssertEqual(store.metrics.bytesWritten, start.bytesWritten, "buffered until commit")
        XCTAssertEqual(store.metrics.durableLSN, 0)
        XCTAssertTrue(store.needsCommit)
        try store.commit()
        XCTAssertFalse(store.needsCommit)
        XCTAssertEqual(store.metrics.fsyncCount, start.fsyncCount + 1)
        XCTAssertEqual(store.metrics.durableLSN, 5)
        let recordBytes = (1...5).reduce(0) { $0 + 16 + payload($1).count }
        XCTAssertEqual(store.metrics.bytesWritten, start.bytesWritten + UInt64(recordBytes))
        try store.commit()
        XCTAssertEqual(store.metrics.fsyncCount, start.fsyncCount + 1, "an empty batch costs nothing")
        try store.append(payload(6))
        try store.commit()
        XCTAssertEqual(store.metrics.fsyncCount, start.fsyncCount + 2)
    }

    func testNoneWritesOnCommitAndNeverFsyncs() throws {
        let (store, _) = try open(configuration(.none))
        let start = store.metrics
        for index in 1...5 { try store.append(payload(index)) }
        XCTAssertTrue(store.needsCommit)
        try store.commit()
        XCTAssertFalse(store.needsCommit, "with none, written is as far as commit goes")
        XCTAssertEqual(store.metrics.fsyncCount, start.fsyncCount)
        XCTAssertEqual(store.metrics.writtenLSN, 5)
        XCTAssertEqual(store.metrics.durableLSN, 0)
        XCTAssertGreaterThan(store.metrics.bytesWritten, start.bytesWritten)
        // A clean shutdown still makes everything durable: the segment, then the MARKS copies
        // recording where the log ends (each copy: its file and the directory).
        try store.close()
        XCTAssertEqual(store.metrics.fsyncCount, start.fsyncCount + 1 + 4)
    }

    /// Rolling: the old segment is fsynced whatever the policy (segment boundaries are clean), so
    /// are the new segment's file and directory entry, and the MARKS copies naming it (4: each
    /// copy's file and the directory), whatever the policy: a roll is rare.
    func testSegmentRollFsyncsPerPolicy() throws {
        // Exactly two records of payload(1)'s size fit in a segment.
        let segmentBytesMax = 24 + 2 * (16 + payload(1).count)
        let expected: [(FsyncPolicy, UInt64)] = [
            (.always, 3 + 2 + 4),      // an fsync per append; new segment file + directory; MARKS
            (.batch, 1 + 2 + 4 + 1),   // old segment at the roll; new file + directory; MARKS; the commit
            (.none, 1 + 2 + 4),        // old segment at the roll; new file + directory; MARKS
        ]
        for (policy, fsyncs) in expected {
            try? FileManager.default.removeItem(atPath: directory)
            let (store, _) = try open(configuration(policy, segmentBytesMax: segmentBytesMax))
            let start = store.metrics
            for _ in 1...3 { try store.append(payload(1)) }
            try store.commit()
            XCTAssertEqual(store.metrics.fsyncCount - start.fsyncCount, fsyncs, "\(policy)")
            XCTAssertEqual(store.metrics.segmentFileName, segmentName(3), "\(policy)")
            XCTAssertEqual(store.metrics.segmentCount, 2, "\(policy)")
            try store.close()
        }
    }

    func testCreatingASegmentFsyncsFileDirectoryAndMarksWhateverThePolicy() throws {
        for policy in FsyncPolicy.allCases {
            try? FileManager.default.removeItem(atPath: directory)
            let (store, _) = try open(configuration(policy))
            // A fresh directory: FORMAT file and its directory entry; the MARKS copies (file and
            // directory each), before any segment exists; the first segment's file and directory
            // entry, then the MARKS copies naming it.
            XCTAssertEqual(store.metrics.fsyncCount, 2 + 4 + 2 + 4, "\(policy)")
            XCTAssertEqual(store.metrics.bytesWritten, 24, "\(policy)")
            try store.close()
        }
    }
}
