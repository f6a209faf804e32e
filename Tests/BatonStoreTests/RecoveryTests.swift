import Foundation
import XCTest
@testable import BatonStore

/// Damaged logs: each test writes a real log, damages the files the way a crash or a bad disk
/// would, reopens, and checks what recovery kept, what it cut, and that the store then works.
final class RecoveryTests: StoreTestCase {
    func testTornTailAtEveryOffsetOfTheLastRecord() throws {
        try writeLog(count: 5)
        let name = segmentName(1)
        let original = try read(name)
        let lastStart = recordOffsets(inSegmentStartingAt: 1, through: 5)[5]!
        XCTAssertEqual(original.count, lastStart + 16 + payload(5).count)

        for cut in (lastStart + 1)..<original.count {
            try write(name, Array(original[..<cut]))
            let (store, recovery) = try open()
            assertRecords(recovery, 1...4)
            XCTAssertEqual(recovery.nextLSN, 5, "cut at \(cut)")
            XCTAssertEqual(recovery.truncation?.reason, .tornRecord, "cut at \(cut)")
            XCTAssertEqual(recovery.truncation?.offset, lastStart)
            XCTAssertEqual(recovery.truncation?.discardedBytes, cut - lastStart)
            XCTAssertEqual(try fileSize(name), lastStart, "the torn record is cut off the file")
            XCTAssertTrue(captured.warnings.last?.contains("\(name) offset \(lastStart)") ?? false, "\(captured.warnings)")
            // The store comes up serving: the next append takes the lost record's LSN.
            XCTAssertEqual(try store.append([0xEE]), 5)
            try store.close()
            let (reopened, again) = try open()
            XCTAssertNil(again.truncation)
            XCTAssertEqual(again.records.map(\.lsn), [1, 2, 3, 4, 5])
            XCTAssertEqual(again.records.last?.payload, [0xEE])
            try reopened.close()
        }
        // A cut exactly at a record boundary is a clean end, not damage.
        try write(name, Array(original[..<lastStart]))
        let (store, recovery) = try open()
        defer { try? store.close() }
        XCTAssertNil(recovery.truncation)
        assertRecords(recovery, 1...4)
    }

    func testFlippedBitInAPayloadCutsTheLogThereAndDropsLaterSegments() throws {
        let small = configuration(segmentBytesMax: 200)
        try writeLog(count: 40, configuration: small)
        let segments = try segmentNames()
        XCTAssertGreaterThan(segments.count, 4)
        // Damage the second record of the second segment.
        let secondFirstLSN = LogSequenceNumber(segments[1].dropFirst(4).prefix(20))!
        let damagedLSN = secondFirstLSN + 1
        let offset = recordOffsets(inSegmentStartingAt: secondFirstLSN, through: damagedLSN)[damagedLSN]!
        try flipBit(segments[1], at: offset + 16 + 3)

        let (store, recovery) = try open(small)
        defer { try? store.close() }
        assertRecords(recovery, 1...Int(secondFirstLSN))
        XCTAssertEqual(recovery.truncation?.reason, .checksumMismatch)
        XCTAssertEqual(recovery.truncation?.fileName, segments[1])
        XCTAssertEqual(recovery.truncation?.offset, offset)
        XCTAssertEqual(recovery.truncation?.deletedSegments, Array(segments[2...]))
        XCTAssertEqual(try segmentNames(), Array(segments[0...1]))
        XCTAssertEqual(try store.append([7]), damagedLSN)
    }

    func testFlippedBitsInARecordHeader() throws {
        try writeLog(count: 6)
        let name = segmentName(1)
        let original = try read(name)
        let start = recordOffsets(inSegmentStartingAt: 1, through: 6)[4]!
        // (byte within the record header, bit, what recovery must call it)
        let cases: [(Int, UInt8, LogTruncation.Reason)] = [
            (0, 0x80, .lengthOutOfRange),   // length's top bit: ~2 GiB
            (3, 0x01, .checksumMismatch),   // length off by one: the CRC no longer matches
            (5, 0x04, .checksumMismatch),   // the CRC itself
            (15, 0x01, .checksumMismatch),  // the LSN (covered by the CRC)
        ]
        for (byte, bit, reason) in cases {
            try write(name, original)
            try flipBit(name, at: start + byte, bit: bit)
            let (store, recovery) = try open()
            assertRecords(recovery, 1...3)
            XCTAssertEqual(recovery.truncation?.reason, reason, "byte \(byte)")
            XCTAssertEqual(recovery.truncation?.offset, start, "byte \(byte)")
            XCTAssertEqual(try fileSize(name), start)
            try store.close()
        }
    }

    func testARecordWithAValidChecksumButTheWrongLSNEndsTheLog() throws {
        try writeLog(count: 6)
        let name = segmentName(1)
        var bytes = try read(name)
        let start = recordOffsets(inSegmentStartingAt: 1, through: 6)[4]!
        // Record 4 rewritten as LSN 9 with a matching CRC: a stale record from another log, say.
        bytes[start + 15] = 9
        let crc = StoreFormat.recordChecksum(lengthAndLSN: bytes[start..<(start + 16)],
                                             payload: bytes[(start + 16)..<(start + 16 + payload(4).count)])
        bytes.replaceSubrange((start + 4)..<(start + 8), with: [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
        try write(name, bytes)

        let (store, recovery) = try open()
        defer { try? store.close() }
        assertRecords(recovery, 1...3)
        XCTAssertEqual(recovery.truncation?.reason, .sequenceMismatch)
        XCTAssertEqual(recovery.truncation?.offset, start)
    }

    func testFlippedBitInTheLastSegmentHeaderRemovesThatSegment() throws {
        let small = configuration(segmentBytesMax: 200)
        try writeLog(count: 30, configuration: small)
        let segments = try segmentNames()
        let lastFirstLSN = LogSequenceNumber(segments.last!.dropFirst(4).prefix(20))!
        try flipBit(segments.last!, at: 14)   // inside the first-LSN field

        let (store, recovery) = try open(small)
        defer { try? store.close() }
        assertRecords(recovery, 1...Int(lastFirstLSN - 1))
        XCTAssertEqual(recovery.truncation?.reason, .badSegmentHeader)
        XCTAssertEqual(recovery.truncation?.offset, 0)
        XCTAssertEqual(recovery.nextLSN, lastFirstLSN)
        // The damaged file is gone; appends continue in the segment before it.
        XCTAssertEqual(try segmentNames(), Array(segments.dropLast()))
        XCTAssertEqual(store.metrics.segmentFileName, segments[segments.count - 2])
        XCTAssertEqual(try store.append([1]), lastFirstLSN)
    }

    func testFlippedBitInAMiddleSegmentHeaderDropsItAndEverythingAfter() throws {
        let small = configuration(segmentBytesMax: 200)
        try writeLog(count: 30, configuration: small)
        let segments = try segmentNames()
        try flipBit(segments[2], at: 3)   // the magic
        let thirdFirstLSN = LogSequenceNumber(segments[2].dropFirst(4).prefix(20))!

        let (store, recovery) = try open(small)
        defer { try? store.close() }
        assertRecords(recovery, 1...Int(thirdFirstLSN - 1))
        XCTAssertEqual(recovery.truncation?.reason, .badSegmentHeader)
        XCTAssertEqual(recovery.truncation?.deletedSegments, Array(segments[3...]))
        XCTAssertEqual(try segmentNames(), Array(segments[0...1]))
    }

    func testZeroFilledTailIsCutAndTheRecordsBeforeItKept() throws {
        try writeLog(count: 5)
        let name = segmentName(1)
        let size = try fileSize(name)
        // A file system that preallocated blocks, or a crash that extended the size before the data.
        try write(name, try read(name) + [UInt8](repeating: 0, count: 4096))

        let (store, recovery) = try open()
        defer { try? store.close() }
        assertRecords(recovery, 1...5)
        XCTAssertEqual(recovery.truncation?.reason, .zeroFilled)
        XCTAssertEqual(recovery.truncation?.offset, size)
        XCTAssertEqual(recovery.truncation?.discardedBytes, 4096)
        XCTAssertEqual(try fileSize(name), size)
        XCTAssertEqual(try store.append([1]), 6)
    }

    func testEmptySegmentFileIsRemoved() throws {
        try writeLog(count: 5)
        // A crash right after creating the next segment, before its header reached the disk.
        try write(segmentName(6), [])

        let (store, recovery) = try open()
        defer { try? store.close() }
        assertRecords(recovery, 1...5)
        XCTAssertEqual(recovery.truncation?.reason, .badSegmentHeader)
        XCTAssertEqual(recovery.truncation?.fileName, segmentName(6))
        XCTAssertEqual(try store.append([1]), 6)
        try store.commit()
        // The store continues in the segment that ends right before LSN 6.
        XCTAssertEqual(try segmentNames(), [segmentName(1)])
    }

    func testHeaderOnlySegmentIsContinued() throws {
        let (store, _) = try open()
        try store.close()
        let (reopened, recovery) = try open()
        defer { try? reopened.close() }
        XCTAssertNil(recovery.truncation)
        XCTAssertEqual(recovery.nextLSN, 1)
        XCTAssertEqual(try segmentNames(), [segmentName(1)])
    }

    func testMissingSegmentInTheMiddleIsRefusedAndNothingIsDeleted() throws {
        let small = configuration(segmentBytesMax: 200)
        try writeLog(count: 30, configuration: small)
        let segments = try segmentNames()
        let missing = try read(segments[2])
        try FileManager.default.removeItem(atPath: path(segments[2]))
        let missingFirstLSN = LogSequenceNumber(segments[2].dropFirst(4).prefix(20))!

        XCTAssertThrowsError(try open(small)) { error in
            XCTAssertEqual(error as? StoreError,
                           .logGap(directory: directory, expectedLSN: missingFirstLSN, foundFile: segments[3]))
            XCTAssertTrue("\(error)".contains("hole"), "\(error)")
        }
        var remaining = segments
        remaining.remove(at: 2)
        XCTAssertEqual(try segmentNames(), remaining, "refusing must not delete the evidence")
        // The operator restores the file: the refusal released the directory and nothing was lost.
        try write(segments[2], missing)
        let (store, recovery) = try open(small)
        defer { try? store.close() }
        XCTAssertNil(recovery.truncation)
        assertRecords(recovery, 1...30)
    }

    func testMissingFirstSegmentWithoutSnapshotIsRefused() throws {
        let small = configuration(segmentBytesMax: 200)
        try writeLog(count: 30, configuration: small)
        let segments = try segmentNames()
        try FileManager.default.removeItem(atPath: path(segments[0]))
        XCTAssertThrowsError(try open(small)) { error in
            XCTAssertEqual(error as? StoreError, .logGap(directory: directory, expectedLSN: 1, foundFile: segments[1]))
        }
    }

    func testStaleTemporaryFilesAreRemoved() throws {
        try writeLog(count: 2)
        try write(snapshotName(2) + ".tmp", [1, 2, 3])
        let (store, recovery) = try open()
        defer { try? store.close() }
        XCTAssertNil(recovery.snapshot)
        XCTAssertFalse(try fileNames().contains(snapshotName(2) + ".tmp"))
    }
}
