@testable import BatonProtocol
import XCTest

/// The reader's integers are big-endian at any offset, in both forms (an array, or bytes in place),
/// and a read past the end fails without moving on.
final class WireReaderTests: XCTestCase {
    func testIntegersAreBigEndianAtUnalignedOffsetsInBothForms() throws {
        let bytes: [UInt8] = [0xEE, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F]
        func check(_ reader: inout WireReader) throws {
            XCTAssertEqual(try reader.u8(), 0xEE)
            XCTAssertEqual(try reader.u16(), 0x0102)
            XCTAssertEqual(try reader.u32(), 0x0304_0506)
            XCTAssertEqual(try reader.u64(), 0x0708_090A_0B0C_0D0E)
            XCTAssertEqual(reader.remaining, 1)
            XCTAssertThrowsError(try reader.u16("tail")) { XCTAssertEqual(($0 as? DecodeFailure)?.code, .malformedFrame) }
            XCTAssertEqual(reader.remaining, 1, "a failed read takes nothing")
            XCTAssertEqual(try reader.u8(), 0x0F)
        }
        var fromArray = WireReader(bytes)
        try check(&fromArray)
        try bytes.withUnsafeBytes { raw in
            var inPlace = WireReader(inPlace: raw)
            try check(&inPlace)
        }
        // A window of a larger array: offsets count from the array's start, the end is the window's.
        var window = WireReader([0xFF] + bytes, from: 1, to: 8)
        XCTAssertEqual(try window.u8(), 0xEE)
        XCTAssertEqual(try window.u16(), 0x0102)
        XCTAssertEqual(try window.u32(), 0x0304_0506)
        XCTAssertThrowsError(try window.u8())
        var negative = WireReader([0xFF, 0xFF, 0xFF, 0xFE])
        XCTAssertEqual(try negative.i32(), -2)
    }
}
