@testable import BatonNamespace
import BatonTestSupport
import XCTest

/// The ordered child-name list against a plain set sorted by UTF-8 bytes, across chunk splits and merges.
final class ChildNamesTests: XCTestCase {
    private func byteSorted(_ names: Set<String>) -> [String] {
        names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    func testRandomInsertsAndRemovesKeepByteOrderAndPagesCoverEverything() {
        var generator = SeededGenerator(seed: 8)
        var names = ChildNames()
        var model = Set<String>()
        let alphabet = ["a", "b", "Z", "0", "é", "\u{10348}", "-", "x"]
        for step in 0..<4_000 {
            let length = Int.random(in: 1...6, using: &generator)
            let name = (0..<length).map { _ in alphabet.randomElement(using: &generator)! }.joined()
            if step % 4 == 3, let victim = model.randomElement(using: &generator) {
                XCTAssertTrue(names.remove(victim))
                model.remove(victim)
                XCTAssertFalse(names.remove(victim))
            } else {
                XCTAssertEqual(names.insert(name), model.insert(name).inserted, name)
            }
        }
        XCTAssertGreaterThan(model.count, ChildNames.chunkMax, "several chunks")
        XCTAssertEqual(names.count, model.count)
        XCTAssertEqual(Array(names), byteSorted(model))
        // Pages of 97 from the start, each after the last name of the one before.
        var listed: [String] = []
        var cursor: String?
        while true {
            let page = names.names(after: cursor, limit: 97)
            listed += page.names
            XCTAssertEqual(page.more, listed.count < model.count)
            guard page.more else { break }
            cursor = page.names.last
        }
        XCTAssertEqual(listed, byteSorted(model))
        // A cursor that is not a child starts after where it would be.
        let after = names.names(after: "b", limit: .max).names
        XCTAssertEqual(after, byteSorted(model).filter { "b".utf8.lexicographicallyPrecedes($0.utf8) })
        for name in model { XCTAssertTrue(names.remove(name)) }
        XCTAssertTrue(names.isEmpty)
        XCTAssertEqual(Array(names), [])
    }

    func testANameIsRemovedByAnotherSpellingOfIt() {
        var names: ChildNames = ["caf\u{e9}", "cafe", "caff"]
        XCTAssertTrue(names.remove("cafe\u{301}"), "the decomposed spelling names the same child")
        XCTAssertEqual(Array(names), ["cafe", "caff"])
    }

    func testEqualityIgnoresChunking() {
        var grown = ChildNames()
        for index in 0..<2_000 { grown.insert("n\(index)") }
        for index in 0..<1_000 { grown.remove("n\(index)") }
        var direct = ChildNames()
        for index in 1_000..<2_000 { direct.insert("n\(index)") }
        XCTAssertEqual(grown, direct)
    }

    /// Names arriving in order (a snapshot read back, a lock's waiters) take the append path; it must
    /// keep order, counts and duplicates right across chunk splits, and later out-of-order inserts too.
    func testInOrderAppendsAcrossChunksThenOutOfOrderInserts() {
        var names = ChildNames()
        let ordered = (0..<(3 * ChildNames.chunkMax + 7)).map { "w" + NamespacePath.sequenceSuffix(UInt64($0)) }
        for name in ordered { XCTAssertTrue(names.insert(name)) }
        XCTAssertFalse(names.insert(ordered.last!), "the last name again")
        XCTAssertFalse(names.insert(ordered[ChildNames.chunkMax]), "a name inside an earlier chunk")
        XCTAssertEqual(names.count, ordered.count)
        XCTAssertEqual(Array(names), ordered)
        XCTAssertTrue(names.insert("a"))
        XCTAssertTrue(names.insert("w0000000000x"))
        XCTAssertTrue(names.insert("z"))
        XCTAssertEqual(Array(names), byteSorted(Set(ordered + ["a", "w0000000000x", "z"])))
        XCTAssertEqual(names.names(after: ordered.last, limit: 10).names, ["z"])
    }
}
