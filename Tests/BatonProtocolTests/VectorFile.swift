import Foundation
import XCTest

/// Reads the golden frames in `Proto/vectors/*.hex` (format: Proto/vectors/README.md).
enum VectorFile {
    /// The package root: this file is `<root>/Tests/BatonProtocolTests/VectorFile.swift`.
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let protocolDirectory = packageRoot.appendingPathComponent("Proto")
    static let vectorsDirectory = protocolDirectory.appendingPathComponent("vectors")

    struct Entry {
        var name: String
        var bytes: [UInt8]
        var line: Int
    }

    /// The entries of one file, in file order. Fails the test on any line that does not parse.
    static func load(_ fileName: String, file: StaticString = #filePath, line: UInt = #line) throws -> [Entry] {
        let url = vectorsDirectory.appendingPathComponent(fileName)
        let text = try String(contentsOf: url, encoding: .utf8)
        return try parse(text, source: fileName)
    }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    static func parse(_ text: String, source: String) throws -> [Entry] {
        var entries: [Entry] = []
        var names = Set<String>()
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let content = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let trimmed = content.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let colon = trimmed.firstIndex(of: ":") else {
                throw ParseError(description: "\(source):\(index + 1): no colon")
            }
            let name = String(trimmed[..<colon]).trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }) else {
                throw ParseError(description: "\(source):\(index + 1): bad name '\(name)'")
            }
            guard names.insert(name).inserted else {
                throw ParseError(description: "\(source):\(index + 1): duplicate name '\(name)'")
            }
            let digits = trimmed[trimmed.index(after: colon)...].filter { !$0.isWhitespace }
            guard digits.count % 2 == 0, !digits.isEmpty else {
                throw ParseError(description: "\(source):\(index + 1): odd or empty hex")
            }
            var bytes: [UInt8] = []
            var cursor = digits.startIndex
            while cursor < digits.endIndex {
                let next = digits.index(cursor, offsetBy: 2)
                guard let byte = UInt8(digits[cursor..<next], radix: 16) else {
                    throw ParseError(description: "\(source):\(index + 1): bad hex digit")
                }
                bytes.append(byte)
                cursor = next
            }
            entries.append(Entry(name: name, bytes: bytes, line: index + 1))
        }
        return entries
    }

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
