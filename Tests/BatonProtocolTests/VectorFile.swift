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
