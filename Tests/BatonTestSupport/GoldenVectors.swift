import Foundation

/// The golden frames in `Proto/vectors/*.hex` (format: Proto/vectors/README.md), for the protocol
/// tests and as the fuzzers' seed corpus.
public enum GoldenVectors {
    /// The package root: this file is `<root>/Tests/BatonTestSupport/GoldenVectors.swift`.
    public static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    public static let directory = packageRoot.appendingPathComponent("Proto").appendingPathComponent("vectors")
    public static let files = ["requests.hex", "replies.hex", "events.hex", "malformed.hex"]

    public struct Entry: Sendable {
        public var name: String
        public var bytes: [UInt8]
        public var line: Int
    }

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The entries of one file, in file order.
    public static func load(_ fileName: String) throws -> [Entry] {
        let text = try String(contentsOf: directory.appendingPathComponent(fileName), encoding: .utf8)
        return try parse(text, source: fileName)
    }

    public static func parse(_ text: String, source: String) throws -> [Entry] {
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
}
