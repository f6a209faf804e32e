import BatonProtocol
import Foundation
import XCTest

/// Proto/PROTOCOL.md and the code cannot drift: its tables are parsed and compared with the enums.
final class SpecTableTests: XCTestCase {
    private func specification() throws -> String {
        try String(contentsOf: VectorFile.protocolDirectory.appendingPathComponent("PROTOCOL.md"), encoding: .utf8)
    }

    /// The lines of the section whose heading starts with `heading`, up to the next heading of the same
    /// or a higher level.
    private func section(_ heading: String, in text: String, file: StaticString = #filePath,
                         line: UInt = #line) -> [Substring] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(where: { $0.hasPrefix(heading) }) else {
            XCTFail("no section '\(heading)' in PROTOCOL.md", file: file, line: line)
            return []
        }
        let level = lines[start].prefix(while: { $0 == "#" }).count
        var end = start + 1
        while end < lines.count {
            let hashes = lines[end].prefix(while: { $0 == "#" }).count
            if hashes > 0 && hashes <= level && lines[end].dropFirst(hashes).first == " " { break }
            end += 1
        }
        return Array(lines[(start + 1)..<end])
    }

    /// The cells of each table row (header and separator rows excluded), backticks stripped.
    private func rows(_ lines: [Substring]) -> [[String]] {
        lines.compactMap { line -> [String]? in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("|") else { return nil }
            let cells = trimmed.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
                .map { $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "`", with: "") }
            if cells.allSatisfy({ $0.allSatisfy { "-:".contains($0) } }) { return nil }
            return cells
        }
    }

    private func number(_ text: String) -> Int? {
        text.hasPrefix("0x") ? Int(text.dropFirst(2), radix: 16) : Int(text)
    }

    func testOpcodeTableMatchesOpcode() throws {
        let table = rows(section("## 6. Opcodes", in: try specification())).filter { number($0[0]) != nil }
        let documented = table.map { "\($0[0]) \($0[1])" }
        let code = Opcode.allCases.map { String(format: "0x%02x %@", $0.rawValue, String(describing: $0)) }
        XCTAssertEqual(documented, code)
        XCTAssertEqual(table.count, Opcode.allCases.count)
    }

    func testErrorCodeTableMatchesErrorCode() throws {
        let table = rows(section("## 7. Error codes", in: try specification())).filter { number($0[0]) != nil }
        XCTAssertEqual(table.map { "\($0[0]) \($0[1])" }, ErrorCode.allCases.map { "\($0.rawValue) \($0.name)" })
        for row in table {
            guard let value = number(row[0]), let code = ErrorCode(rawValue: UInt16(value)) else { continue }
            XCTAssertEqual(row[2], code.closesConnection ? "closes" : "stays open", "connection column of \(code.name)")
            XCTAssertFalse(row[3].isEmpty, "meaning of \(code.name)")
        }
    }

    func testEventKindTableMatchesEventKind() throws {
        let table = rows(section("### 3.3 Events", in: try specification())).filter { number($0[0]) != nil }
        XCTAssertEqual(table.map { "\($0[0]) \($0[1])" },
                       EventKind.allCases.map { String(format: "0x%02x %@", $0.rawValue, String(describing: $0)) })
    }

    func testLockLostReasonTableMatchesLockLostReason() throws {
        let table = rows(section("### 12.7 Losing a hold", in: try specification())).filter { number($0[1]) != nil }
        let reasons: [LockLostReason] = [.sessionExpired, .leaseExpired, .nodeDeleted, .backendSessionLost]
        XCTAssertEqual(table.map { "\($0[1]) \($0[0])" }, reasons.map { "\($0.rawValue) \($0)" })
        XCTAssertNil(LockLostReason(rawValue: 0))
        XCTAssertNil(LockLostReason(rawValue: 5))
    }

    /// Every stored property of `Limits` is documented with its default.
    func testLimitsTableMatchesLimitsDefaults() throws {
        // The table before §8.1 (whose admission rules are `AdmissionConfiguration`'s, checked by the server tests).
        let limits = section("## 8. Limits", in: try specification()).prefix { !$0.hasPrefix("### ") }
        let table = rows(Array(limits)).filter { $0.count >= 2 && number($0[1]) != nil }
        var documented: [String: String] = [:]
        for row in table { documented[row[0]] = row[1] }
        var code: [String: String] = [:]
        for child in Mirror(reflecting: Limits.default).children {
            guard let label = child.label else { continue }
            code[label] = "\(child.value)"
        }
        XCTAssertFalse(code.isEmpty)
        XCTAssertEqual(documented, code)
    }

    func testFixedConstantsAppearInTheSpec() throws {
        let text = try specification()
        XCTAssertTrue(text.contains(String(format: "0x%08x", ProtocolVersion.magic)), "hello magic")
        XCTAssertTrue(text.contains("version \(ProtocolVersion.current)"), "protocol version")
        XCTAssertTrue(text.contains("Stat (\(Stat.wireBytes) bytes)"), "Stat size")
        XCTAssertTrue(text.contains("at most \(Codec.errorMessageBytesMax) bytes"), "error message limit")
        XCTAssertTrue(text.contains("at most \(Endpoint.unixPathBytesMax) bytes"), "socket path limit")
    }
}
