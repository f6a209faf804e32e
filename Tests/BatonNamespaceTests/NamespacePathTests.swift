import BatonNamespace
import BatonProtocol
import XCTest
import BatonTestSupport

final class NamespacePathTests: XCTestCase {
    let limits = Limits.default

    func testValidPaths() throws {
        for path in ["/", "/a", "/a/b", "/locks/orders", "/a.b", "/...", "/.a", "/a..", "/ünïcode/名前", "/a b"] {
            XCTAssertNoThrow(try NamespacePath.validate(path, limits: limits), path)
        }
    }

    func testInvalidPaths() {
        let table: [(String, String)] = [
            ("", "empty"),
            ("a", "relative"),
            ("a/b", "relative with segments"),
            ("/a/", "trailing slash"),
            ("//", "empty segment at the root"),
            ("/a//b", "empty segment"),
            ("/.", "dot"),
            ("/a/./b", "dot in the middle"),
            ("/..", "dot dot"),
            ("/a/../b", "dot dot in the middle"),
            ("/a/..", "dot dot at the end"),
            ("/a\u{0}b", "NUL"),
            ("/a\nb", "newline"),
            ("/a\u{1F}", "unit separator"),
            ("/a\u{7F}", "DEL"),
            ("/\t", "tab"),
        ]
        for (path, reason) in table {
            XCTAssertThrowsError(try NamespacePath.validate(path, limits: limits), reason) { error in
                XCTAssertEqual((error as? ReplyError)?.code, .invalidPath, reason)
            }
        }
    }

    func testLengthLimitCountsUTF8Bytes() {
        var limits = Limits()
        limits.pathBytesMax = 16
        XCTAssertNoThrow(try NamespacePath.validate("/" + String(repeating: "a", count: 15), limits: limits))
        XCTAssertThrowsError(try NamespacePath.validate("/" + String(repeating: "a", count: 16), limits: limits)) {
            XCTAssertEqual(($0 as? ReplyError)?.code, .pathTooLong)
        }
        // 8 two-byte characters: 17 bytes although only 9 characters.
        XCTAssertThrowsError(try NamespacePath.validate("/" + String(repeating: "é", count: 8), limits: limits)) {
            XCTAssertEqual(($0 as? ReplyError)?.code, .pathTooLong)
        }
    }

    /// A sequential create checks its prefix as the path will be with the suffix, without making that
    /// string: the same verdict, error and message as checking the suffixed path.
    func testASequentialPrefixIsCheckedAsThePathItWillBe() {
        var limits = Limits()
        limits.pathBytesMax = 24
        let prefixes = ["/", "/a/", "/a", "/lock-", "", "a", "a/", "//", "/a//", "/.", "/..", "/a/./", "/a/../", "/a/.",
                        "/a\u{0}/", "/a\u{1F}", "/\t", "/" + String(repeating: "a", count: 13),
                        "/" + String(repeating: "a", count: 14), "/" + String(repeating: "é", count: 7)]
        for prefix in prefixes {
            let suffixed = prefix + NamespacePath.sequenceSuffix(0)
            let expected = Result { () throws(ReplyError) in try NamespacePath.validate(suffixed, limits: limits) }
            let actual = Result { () throws(ReplyError) in try NamespacePath.validate(prefix, sequential: true, limits: limits) }
            switch (expected, actual) {
            case (.success, .success): break
            case (.failure(let expected), .failure(let actual)): XCTAssertEqual(actual, expected, prefix)
            default: XCTFail("\(prefix): \(actual), expected \(expected)")
            }
        }
    }

    func testParentAndName() {
        XCTAssertEqual(NamespacePath.parent(of: "/a"), "/")
        XCTAssertEqual(NamespacePath.parent(of: "/a/b/c"), "/a/b")
        XCTAssertEqual(NamespacePath.name(of: "/a/b/c"), "c")
        XCTAssertEqual(NamespacePath.name(of: "/a"), "a")
        XCTAssertEqual(NamespacePath.child("x", of: "/"), "/x")
        XCTAssertEqual(NamespacePath.child("x", of: "/a"), "/a/x")
        XCTAssertEqual(NodePath.parent(of: "/ü/名前/é"), "/ü/名前")
        XCTAssertEqual(NodePath.name(of: "/ü/名前"), "名前")
        XCTAssertEqual(NodePath.parent(of: "/dir/"), "/dir", "a sequential prefix's parent")
        XCTAssertEqual(NodePath.name(of: "/dir/"), "")
        XCTAssertEqual(NodePath.parent(of: "x"), "/")
        XCTAssertEqual(NodePath.name(of: "x"), "x")
        XCTAssertEqual(NodePath.parent(of: "/"), "/")
    }

    func testSequenceSuffixIsTenDigitsZeroPadded() {
        XCTAssertEqual(NamespacePath.sequenceSuffix(0), "0000000000")
        XCTAssertEqual(NamespacePath.sequenceSuffix(42), "0000000042")
        XCTAssertEqual(NamespacePath.sequenceSuffix(NamespacePath.sequenceMax), "9999999999")
        XCTAssertEqual(NamespacePath.sequential(prefix: "/a/", 7), "/a/0000000007")
        let long = "/locks/über/x-00000000000000ff-"
        XCTAssertEqual(NamespacePath.sequential(prefix: long, 1_234_567_890), long + "1234567890")
        XCTAssertEqual(NamespacePath.sequential(prefix: long, 1_234_567_890).utf8.count, long.utf8.count + 10)
    }

    /// The one-pass check against the rules as written (segments split at slashes), over every short
    /// path of slashes, dots, a letter, a dash, controls and a non-ASCII letter, plain and as a
    /// sequential prefix, and random longer ones.
    func testTheCheckAgreesWithTheRulesAsWritten() {
        let alphabet: [String] = ["/", ".", "a", "-", "\u{1}", "\u{7F}", "é", "0"]
        var limits = self.limits
        limits.pathBytesMax = 16
        func rules(_ path: String, sequential: Bool) -> ErrorCode? {
            let bytes = Array(path.utf8)
            if bytes.count + (sequential ? 10 : 0) > limits.pathBytesMax { return .pathTooLong }
            guard bytes.first == UInt8(ascii: "/") else { return .invalidPath }
            if bytes.count == 1 { return nil }
            var segments = bytes.dropFirst().split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).map(Array.init)
            if sequential { segments[segments.count - 1] += Array("0000000000".utf8) }
            for segment in segments {
                if segment.isEmpty || segment == [0x2E] || segment == [0x2E, 0x2E] { return .invalidPath }
                if segment.contains(where: { $0 < 0x20 || $0 == 0x7F }) { return .invalidPath }
            }
            return nil
        }
        func check(_ path: String) {
            for sequential in [false, true] {
                var code: ErrorCode?
                do throws(ReplyError) {
                    try NamespacePath.validate(path, sequential: sequential, limits: limits)
                } catch {
                    code = error.code
                }
                XCTAssertEqual(code, rules(path, sequential: sequential), "\(Array(path.utf8)) sequential \(sequential)")
            }
        }
        var paths: [String] = [""]
        for _ in 0..<4 { paths = paths.flatMap { path in alphabet.map { path + $0 } } }
        for path in paths { check(path) }
        var random = SeededGenerator(seed: 11)
        for _ in 0..<20_000 {
            check(String((0..<Int.random(in: 1...18, using: &random)).map { _ in alphabet.randomElement(using: &random)! }.joined()))
        }
    }
}
