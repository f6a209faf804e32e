import Foundation
import XCTest
@testable import BatonStore

/// Damaged logs: each test writes a real log, damages the files the way a crash or a bad disk
/// would, reopens, and checks what recovery kept, what it cut, and that the store then works.
final class RecoveryTests: StoreTestCase {
    func testTornTailAtEveryOffsetOfTheLastRecord() throws {
        try writeLog(count: 5, crash: true)
        let name = segmentName(1)
        let original = try read(name)
        let lastStart = recordOffsets(inSegmentStartingAt: 1, through: 5)[5]!
        XCTAssertEqual(original.count, lastStart + 16 + payload(5).count)

        for cut in (lastStart + 1)..<original.count {
            try write(name, Array(original[..<cut]))
            do {
                let (store, recovery) = try open()
                assertRecords(recovery, 1...4)
                XCTAssertEqual(recovery.nextLSN, 5, "cut at \(cut)")
                XCTAssertEqual(recovery.truncation?.reason, .tornRecord, "cut at \(cut)")
                XCTAssertEqual(recovery.truncation?.offset, lastStart)
                XCTAssertEqual(recovery.truncation?.discardedBytes, cut - lastStart)
                XCTAssertTrue(recovery.repairs.isEmpty, "a torn tail is not damage")
                XCTAssertEqual(try fileSize(name), lastStart, "the torn record is cut off the file")
                XCTAssertTrue(captured.warnings.last?.contains("\(name) offset \(lastStart)") ?? false, "\(captured.warnings)")
                // The store comes up serving: the next append takes the lost record's LSN.
                XCTAssertEqual(try store.append([0xEE]), 5)
                try store.commit()
            }   // crashed again
            let (reopened, again) = try open()
            XCTAssertNil(again.truncation)
            XCTAssertEqual(again.records.map(\.lsn), [1, 2, 3, 4, 5])
            XCTAssertEqual(again.records.last?.payload, [0xEE])
            _ = reopened
        }
        // A cut exactly at a record boundary is a clean end, not damage.
        try write(name, Array(original[..<lastStart]))
        let (store, recovery) = try open()
        defer { try? store.close() }
        XCTAssertNil(recovery.truncation)
        assertRecords(recovery, 1...4)
    }

    func testALogShorterThanACleanCloseLeftItIsRefused() throws {
        try writeLog(count: 5)
        let name = segmentName(1)
        let original = try read(name)
        let lastStart = recordOffsets(inSegmentStartingAt: 1, through: 5)[5]!
        // Torn or at a record boundary: after a clean close neither is what a crash leaves.
        for cut in [lastStart + 3, lastStart] {
            try write(name, Array(original[..<cut]))
            try assertRefused(file: name, offset: lastStart)
        }
        let (store, recovery) = try openRepairing()
        defer { try? store.close() }
        assertRecords(recovery, 1...4)
        XCTAssertEqual(recovery.repairs.count, 1, "\(recovery.repairs)")
        XCTAssertTrue(recovery.repairs[0].contains("closed cleanly at LSN 5"), "\(recovery.repairs)")
    }

    func testFlippedBitInAPayloadOfAnEarlierSegmentIsRefusedAndRepairCutsThere() throws {
        let small = configuration(segmentBytesMax: 200)
        try writeLog(count: 40, configuration: small, crash: true)
        let segments = try segmentNames()
        XCTAssertGreaterThan(segments.count, 4)
        // Damage the second record of the second segment.
        let secondFirstLSN = LogSequenceNumber(segments[1].dropFirst(4).prefix(20))!
        let damagedLSN = secondFirstLSN + 1
        let offset = recordOffsets(inSegmentStartingAt: secondFirstLSN, through: damagedLSN)[damagedLSN]!
        try flipBit(segments[1], at: offset + 16 + 3)
        try assertRefused(file: segments[1], offset: offset, small)

        let (store, recovery) = try openRepairing(small)
        defer { try? store.close() }
        assertRecords(recovery, 1...Int(secondFirstLSN))
        XCTAssertEqual(recovery.truncation?.reason, .checksumMismatch)
        XCTAssertEqual(recovery.truncation?.fileName, segments[1])
        XCTAssertEqual(recovery.truncation?.offset, offset)
        XCTAssertTrue(recovery.lostRecords)
        XCTAssertTrue(recovery.repairs[0].contains("\(segments[1]) at offset \(offset)"), "\(recovery.repairs)")
        // What was cut is kept for inspection, not deleted.
        XCTAssertEqual(try segmentNames(), Array(segments[0...1]))
        let names = try fileNames()
        XCTAssertTrue(names.contains("\(segments[1]).\(offset).corrupt"), "\(names)")
        for later in segments[2...] { XCTAssertTrue(names.contains(later + ".corrupt"), "\(later) in \(names)") }
        XCTAssertEqual(try store.append([7]), damagedLSN)
    }

    func testFlippedBitsInARecordHeaderFollowedByValidRecordsAreRefused() throws {
        try writeLog(count: 6, crash: true)
        let name = segmentName(1)
        let original = try read(name)
        let start = recordOffsets(inSegmentStartingAt: 1, through: 6)[4]!
        // (byte within the record header, bit, what recovery calls it)
        let cases: [(Int, UInt8, LogTruncation.Reason)] = [
            (0, 0x80, .lengthOutOfRange),   // length's top bit: ~2 GiB
            (1, 0x01, .tornRecord),         // length past the end of the file: looks torn, records 5 and 6 follow
            (3, 0x01, .checksumMismatch),   // length off by one: the CRC no longer matches
            (5, 0x04, .checksumMismatch),   // the CRC itself
            (15, 0x01, .checksumMismatch),  // the LSN (covered by the CRC)
        ]
        for (byte, bit, reason) in cases {
            try write(name, original)
            try flipBit(name, at: start + byte, bit: bit)
            try assertRefused(file: name, offset: start)
            let (store, recovery) = try openRepairing()
            assertRecords(recovery, 1...3)
            XCTAssertEqual(recovery.truncation?.reason, reason, "byte \(byte)")
            XCTAssertEqual(recovery.truncation?.offset, start, "byte \(byte)")
            XCTAssertEqual(try fileSize(name), start)
            try store.close()
            try FileManager.default.removeItem(atPath: path("\(name).\(start).corrupt"))
        }
    }

    func testAFlippedBitInTheLastRecordIsRefusedEvenAfterACrash() throws {
        // A write the crash cut short leaves an incomplete record, never a complete one with
        // different bytes: only the former is a torn tail.
        try writeLog(count: 5, crash: true)
        let start = recordOffsets(inSegmentStartingAt: 1, through: 5)[5]!
        try flipBit(segmentName(1), at: start + 16 + 2)
        try assertRefused(file: segmentName(1), offset: start)
        try flipBit(segmentName(1), at: start + 16 + 2)
        try flipBit(segmentName(1), at: start + 0, bit: 0x80)   // the length: out of range
        try assertRefused(file: segmentName(1), offset: start)
    }

    func testALengthFlippedPastTheEndOfTheLastRecordIsRefusedNotTakenForATornWrite() throws {
        // The record now claims more bytes than the file has, as a write cut short would; but its
        // CRC matches under the length the file holds, so the length field was damaged.
        try writeLog(count: 5, crash: true)
        let start = recordOffsets(inSegmentStartingAt: 1, through: 5)[5]!
        try flipBit(segmentName(1), at: start + 2, bit: 0x01)
        try assertRefused(file: segmentName(1), offset: start)
    }

    func testTruncationInsideTheLastRecordAfterACrashIsATornTail() throws {
        // The limit of what recovery can tell (docs/STORAGE.md, "What recovery cuts"): exactly what
        // a crash mid-write leaves.
        try writeLog(count: 5, crash: true)
        let start = recordOffsets(inSegmentStartingAt: 1, through: 5)[5]!
        try write(segmentName(1), Array(try read(segmentName(1))[..<(start + 20)]))
        let (store, recovery) = try open()
        defer { try? store.close() }
        assertRecords(recovery, 1...4)
        XCTAssertEqual(recovery.truncation?.reason, .tornRecord)
        XCTAssertTrue(recovery.repairs.isEmpty)
    }

    func testARecordWithAValidChecksumButTheWrongLSNIsRefused() throws {
        try writeLog(count: 6, crash: true)
        let name = segmentName(1)
        var bytes = try read(name)
        let start = recordOffsets(inSegmentStartingAt: 1, through: 6)[4]!
        // Record 4 rewritten as LSN 9 with a matching CRC: a stale record from another log, say.
        bytes[start + 15] = 9
        let crc = StoreFormat.recordChecksum(lengthAndLSN: bytes[start..<(start + 16)],
                                             payload: bytes[(start + 16)..<(start + 16 + payload(4).count)])
        bytes.replaceSubrange((start + 4)..<(start + 8), with: [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
        try write(name, bytes)
        try assertRefused(file: name, offset: start)

        let (store, recovery) = try openRepairing()
        defer { try? store.close() }
        assertRecords(recovery, 1...3)
        XCTAssertEqual(recovery.truncation?.reason, .sequenceMismatch)
        XCTAssertEqual(recovery.truncation?.offset, start)
    }

    func testFlippedBitInTheLastSegmentHeaderIsRefusedAndRepairRemovesThatSegment() throws {
        let small = configuration(segmentBytesMax: 200)
        try writeLog(count: 30, configuration: small, crash: true)
        let segments = try segmentNames()
        let lastFirstLSN = LogSequenceNumber(segments.last!.dropFirst(4).prefix(20))!
        try flipBit(segments.last!, at: 14)   // inside the first-LSN field
        try assertRefused(file: segments.last!, offset: 0, small)

        let (store, recovery) = try openRepairing(small)
        defer { try? store.close() }
        assertRecords(recovery, 1...Int(lastFirstLSN - 1))
        XCTAssertEqual(recovery.truncation?.reason, .badSegmentHeader)
        XCTAssertEqual(recovery.truncation?.offset, 0)
        XCTAssertEqual(recovery.nextLSN, lastFirstLSN)
        XCTAssertTrue(try fileNames().contains(segments.last! + ".0.corrupt"))
        XCTAssertEqual(try store.append([1]), lastFirstLSN)
    }

    func testFlippedBitInAMiddleSegmentHeaderIsRefusedAndRepairSetsItAndTheRestAside() throws {
        let small = configuration(segmentBytesMax: 200)
        try writeLog(count: 30, configuration: small)
        let segments = try segmentNames()
        try flipBit(segments[2], at: 3)   // the magic
        let thirdFirstLSN = LogSequenceNumber(segments[2].dropFirst(4).prefix(20))!
        try assertRefused(file: segments[2], offset: 0, small)

        let (store, recovery) = try openRepairing(small)
        defer { try? store.close() }
        assertRecords(recovery, 1...Int(thirdFirstLSN - 1))
        XCTAssertEqual(recovery.truncation?.reason, .badSegmentHeader)
        XCTAssertEqual(recovery.truncation?.deletedSegments, Array(segments[3...]))
        XCTAssertEqual(Array(try segmentNames().prefix(2)), Array(segments[0...1]))
    }

    func testDeletedLastSegmentIsRefusedAfterACrashToo() throws {
        let small = configuration(segmentBytesMax: 200)
        try writeLog(count: 30, configuration: small, crash: true)
        let segments = try segmentNames()
        try FileManager.default.removeItem(atPath: path(segments.last!))
        try assertRefused(file: segments.last!, offset: 0, small)
        let (store, recovery) = try openRepairing(small)
        defer { try? store.close() }
        let lastFirstLSN = LogSequenceNumber(segments.last!.dropFirst(4).prefix(20))!
        assertRecords(recovery, 1...Int(lastFirstLSN - 1))
        XCTAssertTrue(recovery.repairs[0].contains("missing"), "\(recovery.repairs)")
    }

    func testZeroFilledTailIsCutAndTheRecordsBeforeItKept() throws {
        try writeLog(count: 5, crash: true)
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
        try writeLog(count: 5, crash: true)
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

    func testOneDamagedMarksCopyIsReplacedByTheOtherAndBothDamagedAreRefused() throws {
        let (store, _) = try open()
        store.raiseMarks(CounterMarks(transactions: 70_000, sequences: 3_000))
        try store.commit()
        try store.close()
        try flipBit("MARKS-a", at: 30)
        do {
            let (reopened, recovery) = try open()
            XCTAssertEqual(recovery.marks, CounterMarks(transactions: 70_000, sequences: 3_000))
            XCTAssertTrue(captured.warnings.contains { $0.contains("MARKS-a") }, "\(captured.warnings)")
            try reopened.close()
        }
        try flipBit("MARKS-a", at: 30)
        try flipBit("MARKS-b", at: 30)
        try assertRefused(file: "MARKS-a", offset: 0)
        try FileManager.default.removeItem(atPath: path("MARKS-a"))
        try FileManager.default.removeItem(atPath: path("MARKS-b"))
        try assertRefused(file: "MARKS-a", offset: 0)
        let (repaired, recovery) = try openRepairing()
        defer { try? repaired.close() }
        XCTAssertFalse(recovery.repairs.isEmpty)
    }

    func testMarksSurviveARepairThatCutsTheReservationsOutOfTheLog() throws {
        try writeLog(count: 6, crash: true)
        do {
            let (store, _) = try open()
            XCTAssertEqual(try store.append(payload(7)), 7)
            store.raiseMarks(CounterMarks(transactions: 50_000, sequences: 0))
            try store.commit()
            try store.close()
        }
        try flipBit(segmentName(1), at: recordOffsets(inSegmentStartingAt: 1, through: 6)[2]! + 20)
        try assertRefused(file: segmentName(1), offset: recordOffsets(inSegmentStartingAt: 1, through: 6)[2]!)
        let (store, recovery) = try openRepairing()
        defer { try? store.close() }
        assertRecords(recovery, 1...1)
        XCTAssertEqual(recovery.marks.transactions, 50_000, "the marks live outside the log")
        XCTAssertTrue(recovery.lostRecords)
    }

    func testAFormatOneDirectoryIsUpgradedWithMarks() throws {
        try writeLog(count: 3)
        for name in ["MARKS-a", "MARKS-b"] { try FileManager.default.removeItem(atPath: path(name)) }
        try write("FORMAT", Array("baton-store-format 1\n".utf8))
        let (store, recovery) = try open()
        defer { try? store.close() }
        assertRecords(recovery, 1...3)
        XCTAssertEqual(String(decoding: try read("FORMAT"), as: UTF8.self), "baton-store-format 2\n")
        XCTAssertTrue(try fileNames().contains("MARKS-a"))
        XCTAssertTrue(try fileNames().contains("MARKS-b"))
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
