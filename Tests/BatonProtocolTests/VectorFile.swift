import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// The golden frames of `Proto/vectors/*.hex`, read by `GoldenVectors` (BatonTestSupport).
enum VectorFile {
    static let packageRoot = GoldenVectors.packageRoot
    static let protocolDirectory = packageRoot.appendingPathComponent("Proto")
    static let vectorsDirectory = GoldenVectors.directory

    typealias Entry = GoldenVectors.Entry
    typealias ParseError = GoldenVectors.ParseError

    /// The entries of one file, in file order.
    static func load(_ fileName: String) throws -> [Entry] { try GoldenVectors.load(fileName) }

    static func parse(_ text: String, source: String) throws -> [Entry] { try GoldenVectors.parse(text, source: source) }

    /// The body of a whole frame, after checking that its length prefix matches its size.
    static func body(of entry: Entry, file: StaticString = #filePath, line: UInt = #line) -> [UInt8]? {
        guard entry.bytes.count >= 4 else {
            XCTFail("\(entry.name): shorter than a length prefix", file: file, line: line)
            return nil
        }
        let length = entry.bytes[0..<4].reduce(0) { $0 << 8 | Int($1) }
        guard length == entry.bytes.count - 4 else {
            XCTFail("\(entry.name): prefix says \(length) bytes, body has \(entry.bytes.count - 4)", file: file, line: line)
            return nil
        }
        return Array(entry.bytes[4...])
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

/// Decodes a request body both ways batond and the tests do: from an array, and in place (as batond
/// reads its input) from raw memory where the body is followed by bytes that would change the answer
/// if read (a length that overran the frame would decode them). Both must agree, in value and failure.
func decodeRequestBothWays(_ body: [UInt8], file: StaticString = #filePath, line: UInt = #line)
    throws(DecodeFailure) -> (requestID: UInt32, request: Request) {
    let fromArray = Result { () throws(DecodeFailure) in try Codec.decodeRequest(body) }
    let padded = body + [UInt8](repeating: 0x01, count: 64)
    let inPlace = padded.withUnsafeBytes { raw in
        Result { () throws(DecodeFailure) in try Codec.decodeRequest(inPlace: UnsafeRawBufferPointer(rebasing: raw[..<body.count])) }
    }
    switch (fromArray, inPlace) {
    case (.success(let a), .success(let b)):
        XCTAssertEqual(a.requestID, b.requestID, hex(body), file: file, line: line)
        XCTAssertEqual(a.request, b.request, hex(body), file: file, line: line)
    case (.failure(let a), .failure(let b)):
        XCTAssertEqual(a, b, hex(body), file: file, line: line)
    default:
        XCTFail("array and in-place decodes differ for \(hex(body)): \(fromArray) vs \(inPlace)", file: file, line: line)
    }
    return try fromArray.get()
}
