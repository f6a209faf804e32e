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

    /// Strings are read a word at a time to see whether they are ASCII: a high bit at any position
    /// of any length (in the words or the tail) must send the string through validation, in both
    /// forms, and whatever the writer wrote must read back the same.
    func testStringsOfEveryLengthWithAHighBitAtEveryPosition() throws {
        func read(_ body: [UInt8]) -> [Result<String, DecodeFailure>] {
            var fromArray = WireReader(body)
            let first = Result { () throws(DecodeFailure) in try fromArray.string("s", invalidEncoding: .malformedFrame) }
            let second = body.withUnsafeBytes { raw in
                var inPlace = WireReader(inPlace: raw)
                return Result { () throws(DecodeFailure) in try inPlace.string("s", invalidEncoding: .malformedFrame) }
            }
            return [first, second]
        }
        for length in 0...40 {
            let ascii = String(repeating: "a", count: length)
            var writer = WireWriter()
            writer.string(ascii)
            XCTAssertEqual(writer.bytes, [UInt8(length >> 8), UInt8(length & 0xFF)] + Array(ascii.utf8))
            for result in read(writer.bytes) { XCTAssertEqual(try result.get(), ascii) }
            for position in 0..<length {
                // Not UTF-8: a lone 0xFF anywhere fails.
                var invalid = writer.bytes
                invalid[2 + position] = 0xFF
                for result in read(invalid) {
                    XCTAssertThrowsError(try result.get(), "0xFF at \(position) of \(length)") {
                        XCTAssertEqual(($0 as? DecodeFailure)?.code, .malformedFrame)
                    }
                }
                // UTF-8 beyond ASCII anywhere reads back as written (two bytes: "é" in place of two "a").
                guard position + 1 < length else { continue }
                let accented = String(repeating: "a", count: position) + "é" + String(repeating: "a", count: length - position - 2)
                var accentedWriter = WireWriter()
                accentedWriter.string(accented)
                XCTAssertEqual(accentedWriter.bytes.count, 2 + length)
                for result in read(accentedWriter.bytes) { XCTAssertEqual(try result.get(), accented) }
            }
        }
    }

    /// A frame's length prefix is written in place, big-endian, after what the writer held.
    func testFinishFrameWritesTheBodyLengthBigEndian() {
        var writer = WireWriter()
        writer.u8(0xAB)
        let start = writer.beginFrame()
        for byte in 0..<300 { writer.u8(UInt8(byte & 0xFF)) }
        writer.finishFrame(start)
        XCTAssertEqual(Array(writer.bytes[0..<5]), [0xAB, 0, 0, 0x01, 0x2C])
        XCTAssertEqual(writer.bytes.count, 305)
    }
}
