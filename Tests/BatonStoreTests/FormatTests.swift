import Foundation
import XCTest
@testable import BatonStore

final class FormatTests: StoreTestCase {
    func testANewerFormatIsRefusedWithBothVersionsNamedAndNothingTouched() throws {
        try writeLog(count: 3)
        try write("FORMAT", Array("baton-store-format 3\n".utf8))
        let before = try fileNames()
        XCTAssertThrowsError(try open()) { error in
            XCTAssertEqual(error as? StoreError,
                           .unsupportedFormat(path: path("FORMAT"), foundVersion: 3, readableVersions: 1...2))
            let message = "\(error)"
            XCTAssertTrue(message.contains("format 3"), message)
            XCTAssertTrue(message.contains("formats 1 to 2"), message)
        }
        XCTAssertEqual(try fileNames(), before)
        XCTAssertEqual(try read(segmentName(1)).count, 24 + (1...3).reduce(0) { $0 + 16 + payload($1).count })
    }

    func testADamagedFormatFileIsRefusedAndRepairRewritesItWhenTheOtherFilesSayOtherwise() throws {
        try writeLog(count: 3)
        for damaged in ["baton-store-format 6\n", "baton-store-format 0\n", "baton-st\u{0}re-format 2\n"] {
            try write("FORMAT", Array(damaged.utf8))
            XCTAssertThrowsError(try open(), damaged)
            let (store, recovery) = try openRepairing()
            XCTAssertTrue(recovery.repairs.contains { $0.contains("FORMAT rewritten") }, "\(recovery.repairs)")
            assertRecords(recovery, 1...3)
            try store.close()
            XCTAssertEqual(String(decoding: try read("FORMAT"), as: UTF8.self), "baton-store-format 2\n")
        }
        // A FORMAT naming a newer format beside MARKS of that format is a newer directory: untouched.
        var marks = try read("MARKS-a")
        marks[8] = 3
        let crc = StoreFormat.checksum(marks[8..<52])
        marks.replaceSubrange(52..<56, with: [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
        try write("MARKS-a", marks)
        try write("MARKS-b", marks)
        try write("FORMAT", Array("baton-store-format 3\n".utf8))
        XCTAssertThrowsError(try openRepairing()) { error in
            guard case .unsupportedFormat? = error as? StoreError else { return XCTFail("\(error)") }
        }
    }

    func testAnUnreadableFormatFileIsRefused() throws {
        try writeLog(count: 1)
        try write("FORMAT", Array("something else".utf8))
        XCTAssertThrowsError(try open()) { error in
            XCTAssertEqual(error as? StoreError, .unreadableFormatFile(path: path("FORMAT")))
        }
    }

    func testLogFilesWithoutAFormatFileAreRefused() throws {
        try writeLog(count: 1)
        try FileManager.default.removeItem(atPath: path("FORMAT"))
        XCTAssertThrowsError(try open()) { error in
            XCTAssertEqual(error as? StoreError, .missingFormatFile(directory: directory))
        }
    }

    func testASegmentOfANewerFormatIsRefusedNotTreatedAsCorrupt() throws {
        try writeLog(count: 3)
        // A well-formed header (its CRC recomputed) that says version 3.
        var bytes = try read(segmentName(1))
        bytes[8] = 3
        let crc = StoreFormat.checksum(bytes[8..<20])
        bytes.replaceSubrange(20..<24, with: [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
        try write(segmentName(1), bytes)
        XCTAssertThrowsError(try open()) { error in
            XCTAssertEqual(error as? StoreError,
                           .unsupportedFormat(path: path(segmentName(1)), foundVersion: 3, readableVersions: 1...2))
        }
        XCTAssertEqual(try read(segmentName(1)), bytes, "left as found")
    }

    func testSegmentHeaderLayout() throws {
        try writeLog(count: 1)
        let bytes = try read(segmentName(1))
        XCTAssertEqual(Array(bytes[0..<8]), Array("BATONWAL".utf8))
        XCTAssertEqual(bytes[8], 2)
        XCTAssertEqual(Array(bytes[9..<12]), [0, 0, 0])
        XCTAssertEqual(Array(bytes[12..<20]), [0, 0, 0, 0, 0, 0, 0, 1])
        XCTAssertEqual(StoreFormat.readUInt32(bytes, at: 20), StoreFormat.checksum(bytes[8..<20]))
        // The record: length, CRC over length + LSN + payload, LSN, payload.
        let record = Array(bytes[24...])
        XCTAssertEqual(StoreFormat.readUInt32(record, at: 0), UInt32(payload(1).count))
        XCTAssertEqual(StoreFormat.readUInt64(record, at: 8), 1)
        XCTAssertEqual(Array(record[16...]), payload(1))
        var covered = Array(record[0..<4]) + Array(record[8..<16]) + payload(1)
        XCTAssertEqual(StoreFormat.readUInt32(record, at: 4), StoreFormat.checksum(covered[...]))
        covered[0] ^= 1
        XCTAssertNotEqual(StoreFormat.readUInt32(record, at: 4), StoreFormat.checksum(covered[...]))
    }

    func testChecksumIsZlibCRC32() {
        // The standard check value of CRC-32 (IEEE): "123456789" -> 0xCBF43926.
        XCTAssertEqual(StoreFormat.checksum(Array("123456789".utf8)[...]), 0xCBF4_3926)
        // Continuing from a seed equals checksumming the concatenation; an empty part changes nothing.
        let whole = StoreFormat.checksum(Array("123456789".utf8)[...])
        let split = StoreFormat.checksum(Array("6789".utf8)[...], seed: StoreFormat.checksum(Array("12345".utf8)[...]))
        XCTAssertEqual(split, whole)
        XCTAssertEqual(StoreFormat.checksum([UInt8]()[...], seed: whole), whole)
    }

    func testFileNamesSortLikeTheirNumbers() {
        XCTAssertEqual(StoreFormat.segmentFileName(firstLSN: 42), "wal-00000000000000000042.log")
        XCTAssertEqual(StoreFormat.snapshotFileName(lsn: UInt64.max), "snapshot-18446744073709551615.snap")
        XCTAssertEqual(StoreFormat.parseSegmentFileName("wal-00000000000000000042.log"), 42)
        XCTAssertNil(StoreFormat.parseSegmentFileName("wal-42.log"))
        XCTAssertNil(StoreFormat.parseSegmentFileName("wal-0000000000000000004x.log"))
        XCTAssertNil(StoreFormat.parseSnapshotFileName("snapshot-00000000000000000042.snap.tmp"))
    }
}
