import Foundation
import XCTest
@testable import BatonStore

final class LogRoundTripTests: StoreTestCase {
    func testAppendAndReopenAcrossSeveralSegments() throws {
        // Room for a few records per segment, so 60 records span many files.
        let small = configuration(segmentBytesMax: 200)
        try writeLog(count: 60, configuration: small)
        let segments = try segmentNames()
        XCTAssertGreaterThan(segments.count, 5)
        XCTAssertEqual(segments.first, segmentName(1))

        let (store, recovery) = try open(small)
        defer { try? store.close() }
        XCTAssertNil(recovery.snapshot)
        XCTAssertNil(recovery.truncation)
        assertRecords(recovery, 1...60)
        XCTAssertEqual(recovery.nextLSN, 61)
        XCTAssertEqual(store.metrics.segmentCount, segments.count)
        XCTAssertTrue(captured.warnings.isEmpty, "\(captured.warnings)")
    }

    func testSegmentsHoldContiguousRecordsAndNeverExceedTheLimitUnlessOneRecordDoes() throws {
        let small = configuration(segmentBytesMax: 200)
        let (store, _) = try open(small)
        for index in 1...30 { try store.append(payload(index)) }
        // One record bigger than a whole segment gets a segment of its own.
        let big = [UInt8](repeating: 0xAB, count: 500)
        let bigLSN = try store.append(big)
        try store.append(payload(32))
        try store.close()

        for name in try segmentNames() {
            let size = try fileSize(name)
            if name == segmentName(bigLSN) {
                XCTAssertEqual(size, 24 + 16 + 500)
            } else {
                XCTAssertLessThanOrEqual(size, 200, name)
            }
        }
        let (reopened, recovery) = try open(small)
        defer { try? reopened.close() }
        XCTAssertEqual(recovery.records.count, 32)
        XCTAssertEqual(recovery.records[Int(bigLSN) - 1].payload, big)
        XCTAssertEqual(recovery.records.map(\.lsn), Array(1...32))
    }

    func testLSNsContinueAfterReopen() throws {
        try writeLog(count: 3)
        do {
            let (store, recovery) = try open()
            XCTAssertEqual(recovery.nextLSN, 4)
            XCTAssertEqual(try store.append(payload(4)), 4)
            XCTAssertEqual(try store.append(payload(5)), 5)
            try store.close()
        }
        let (store, recovery) = try open()
        defer { try? store.close() }
        assertRecords(recovery, 1...5)
        XCTAssertEqual(try store.append(payload(6)), 6)
        // The last segment is continued, not replaced, when it ends right before the next LSN.
        XCTAssertEqual(try segmentNames(), [segmentName(1)])
    }

    func testEmptyPayloadRoundTrips() throws {
        let (store, _) = try open()
        try store.append([])
        try store.append([1])
        try store.close()
        let (reopened, recovery) = try open()
        defer { try? reopened.close() }
        XCTAssertEqual(recovery.records.map(\.payload), [[], [1]])
    }

    func testMissingDirectoryIsCreatedWithItsParents() throws {
        directory = root + "/a/b/data"
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory))
        let (store, recovery) = try open()
        defer { try? store.close() }
        XCTAssertNil(recovery.snapshot)
        XCTAssertTrue(recovery.records.isEmpty)
        XCTAssertEqual(recovery.nextLSN, 1)
        XCTAssertEqual(String(decoding: try read("FORMAT"), as: UTF8.self), "baton-store-format 2\n")
        XCTAssertEqual(try segmentNames(), [segmentName(1)])
    }

    func testAPathThatIsAFileIsRefused() throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        XCTAssertTrue(FileManager.default.createFile(atPath: directory, contents: Data([1])))
        XCTAssertThrowsError(try open()) { error in
            XCTAssertEqual(error as? StoreError, .notADirectory(path: directory))
        }
    }

    func testRecordTooLargeIsANamedErrorAndTheStoreStaysUsable() throws {
        var limited = configuration()
        limited.recordBytesMax = 100
        let (store, _) = try open(limited)
        XCTAssertThrowsError(try store.append([UInt8](repeating: 1, count: 101))) { error in
            XCTAssertEqual(error as? StoreError, .recordTooLarge(bytes: 101, bytesMax: 100))
        }
        XCTAssertEqual(try store.append([UInt8](repeating: 1, count: 100)), 1)
        try store.close()
    }

    func testASecondStoreOnTheSameDirectoryIsRefusedUntilTheFirstCloses() throws {
        let (store, _) = try open()
        XCTAssertThrowsError(try open()) { error in
            XCTAssertEqual(error as? StoreError, .directoryLocked(path: directory))
        }
        try store.close()
        let (again, _) = try open()
        try again.close()
    }

    func testClosedStoreRefusesWork() throws {
        let (store, _) = try open()
        try store.close()
        try store.close()
        XCTAssertThrowsError(try store.append([1])) { XCTAssertEqual($0 as? StoreError, .closed) }
        XCTAssertThrowsError(try store.commit()) { XCTAssertEqual($0 as? StoreError, .closed) }
    }

    func testBufferedAppendsAreWrittenOnceTheBufferIsFull() throws {
        var buffered = configuration(.batch)
        buffered.writeBufferBytesMax = 100
        let (store, _) = try open(buffered)
        defer { try? store.close() }
        let start = store.metrics.bytesWritten
        try store.append([UInt8](repeating: 1, count: 40))   // 56 bytes buffered
        XCTAssertEqual(store.metrics.bytesWritten, start)
        try store.append([UInt8](repeating: 2, count: 40))   // 112 >= 100: written, not fsynced
        XCTAssertEqual(store.metrics.bytesWritten, start + 112)
        XCTAssertEqual(store.metrics.writtenLSN, 2)
        XCTAssertEqual(store.metrics.durableLSN, 0)
        try store.commit()
        XCTAssertEqual(store.metrics.durableLSN, 2)
    }
}
