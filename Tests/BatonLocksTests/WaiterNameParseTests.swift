@testable import BatonLocks
import BatonProtocol
import XCTest

/// `WaiterName` reads the 16 hex digits of the session eight bytes at a time: every byte value at
/// every digit position must be judged as the byte-by-byte rule does (0-9, a-f; nothing else).
final class WaiterNameParseTests: XCTestCase {
    /// The byte-by-byte rule.
    private func hexDigit(_ byte: UInt8) -> UInt64? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt64(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt64(byte - UInt8(ascii: "a") + 10)
        default: nil
        }
    }

    private func reference(_ bytes: [UInt8]) -> UInt64? {
        var value: UInt64 = 0
        for byte in bytes {
            guard let digit = hexDigit(byte) else { return nil }
            value = value << 4 | digit
        }
        return value
    }

    private func word(_ bytes: [UInt8]) -> UInt64 {
        bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    /// `base` with every byte value at each of its eight positions in turn.
    private func forEveryByteAtEveryPosition(of base: String, _ check: (_ bytes: [UInt8], _ message: String) -> Void) {
        for position in 0..<8 {
            for byte in UInt8.min...UInt8.max {
                var bytes = Array(base.utf8)
                bytes[position] = byte
                check(bytes, "byte \(byte) at \(position)")
            }
        }
    }

    func testEveryByteValueAtEveryDigitPosition() {
        forEveryByteAtEveryPosition(of: "0123abcd") { bytes, message in
            XCTAssertEqual(WaiterName.hexWord(word(bytes)), reference(bytes), message)
        }
    }

    func testEveryByteValueAtEveryDecimalPosition() {
        forEveryByteAtEveryPosition(of: "90817263") { bytes, message in
            let expected: UInt64? = bytes.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
                ? UInt64(String(decoding: bytes, as: UTF8.self)) : nil
            XCTAssertEqual(WaiterName.decimalWord(word(bytes)), expected, message)
        }
        XCTAssertEqual(WaiterName.decimalWord(word(Array("99999999".utf8))), 99_999_999)
        XCTAssertEqual(WaiterName.decimalWord(word(Array("00000000".utf8))), 0)
    }

    func testRandomWordsAgreeWithTheByteRule() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789abcdef".utf8) + Array("/:@`gAF\u{7f}".utf8) + [0x00, 0x80, 0xff, 0xb0, 0xe1]
        for _ in 0..<20_000 {
            // Mostly valid words (each byte a digit with high odds), so both answers are exercised.
            let bytes = (0..<8).map { _ in
                Int.random(in: 0..<20, using: &generator) == 0 ? alphabet.randomElement(using: &generator)!
                    : alphabet[Int.random(in: 0..<16, using: &generator)]
            }
            XCTAssertEqual(WaiterName.hexWord(word(bytes)), reference(bytes), "\(bytes)")
        }
    }

    func testNamesRoundTrip() {
        var generator = SystemRandomNumberGenerator()
        let sessions: [UInt64] = [0, 1, 0xa1, 0xffff_ffff, 0x1_0000_0000, .max, 0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]
            + (0..<1000).map { _ in UInt64.random(in: .min ... .max, using: &generator) }
        for session in sessions {
            for kind in [LockKind.exclusive, .shared, .semaphore] {
                for sequence: UInt64 in [0, 41, 9_876_543_210, 9_999_999_999, UInt64.random(in: 0...9_999_999_999, using: &generator)] {
                    let name = WaiterName(kind: kind, session: session, sequence: sequence)
                    XCTAssertEqual(WaiterName(parsing: name.name), name)
                    XCTAssertEqual(WaiterName(lastComponentOf: "/locks/a/" + name.name), name)
                }
            }
        }
        // Upper-case hex is no waiter name (the manager writes lower case only).
        XCTAssertNil(WaiterName(parsing: "x-00000000000000A1-0000000041"))
        XCTAssertNil(WaiterName(parsing: "x-00000000000000g1-0000000041"))
        XCTAssertNil(WaiterName(parsing: "x-00000000000000a1-00000a0041"))
        XCTAssertNil(WaiterName(parsing: "x-00000000000000a1-00000000/1"))
        XCTAssertEqual(WaiterName(parsing: "x-00000000000000a1-0000000041")?.session, 0xa1)
    }
}
