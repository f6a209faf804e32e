@testable import BatonNamespace
import BatonProtocol
import BatonTestSupport
import XCTest

/// A parent's listing, read from its directory in the tree (the only place a child's name is kept),
/// against a plain set sorted by UTF-8 bytes, across chunk splits and removals.
final class ChildListingTests: XCTestCase {
    private func byteSorted(_ names: Set<String>) -> [String] {
        names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    private func node() -> Node { Node(data: [], stat: Stat()) }

    func testRandomInsertsAndRemovesKeepByteOrderAndPagesCoverEverything() {
        var generator = SeededGenerator(seed: 8)
        var tree = NodeTree(root: node())
        var model = Set<String>()
        // ASCII only: another spelling of a non-ASCII name names the same node (NodeTreeTests).
        let alphabet = ["a", "b", "Z", "0", "-", "x", "~"]
        for step in 0..<4_000 {
            let length = Int.random(in: 1...6, using: &generator)
            let name = (0..<length).map { _ in alphabet.randomElement(using: &generator)! }.joined()
            if step % 4 == 3, let victim = model.randomElement(using: &generator) {
                XCTAssertNotNil(tree.removeValue(forKey: "/p/" + victim))
                model.remove(victim)
                XCTAssertNil(tree.removeValue(forKey: "/p/" + victim))
            } else {
                XCTAssertEqual(tree.insertIfAbsent("/p/" + name, node), model.insert(name).inserted, name)
            }
        }
        XCTAssertGreaterThan(model.count, 2 * NodeTree.chunkMax, "several chunks")
        XCTAssertEqual(tree.childNames(of: "/p", after: nil, limit: .max).names, byteSorted(model))
        // Pages of 97 from the start, each after the last name of the one before.
        var listed: [String] = []
        var cursor: String?
        while true {
            let page = tree.childNames(of: "/p", after: cursor, limit: 97)
            listed += page.names
            XCTAssertEqual(page.more, listed.count < model.count)
            guard page.more else { break }
            cursor = page.names.last
        }
        XCTAssertEqual(listed, byteSorted(model))
        // A cursor that is not a child starts after where it would be; one past the last gives nothing.
        for cursor in ["b", "a-", "0", "~~~~~~~"] {
            XCTAssertEqual(tree.childNames(of: "/p", after: cursor, limit: .max).names,
                           byteSorted(model).filter { cursor.utf8.lexicographicallyPrecedes($0.utf8) }, cursor)
        }
        XCTAssertEqual(tree.childNames(of: "/p", after: nil, limit: 0).more, true)
        for name in model { XCTAssertNotNil(tree.removeValue(forKey: "/p/" + name)) }
        XCTAssertEqual(tree.childNames(of: "/p", after: nil, limit: .max).names, [])
        XCTAssertEqual(tree.childNames(of: "/p", after: nil, limit: .max).more, false)
    }

    /// Names arriving in order (a lock's waiters) take the append path; it must keep order and refuse
    /// duplicates across chunk splits, and later out-of-order inserts too.
    func testInOrderAppendsAcrossChunksThenOutOfOrderInserts() {
        var tree = NodeTree(root: node())
        let ordered = (0..<(3 * NodeTree.chunkMax + 7)).map { "w" + NamespacePath.sequenceSuffix(UInt64($0)) }
        for name in ordered { XCTAssertTrue(tree.insertIfAbsent("/l/" + name, node)) }
        XCTAssertFalse(tree.insertIfAbsent("/l/" + ordered.last!, node), "the last name again")
        XCTAssertFalse(tree.insertIfAbsent("/l/" + ordered[NodeTree.chunkMax], node), "a name inside an earlier chunk")
        XCTAssertEqual(tree.count, ordered.count + 1)
        XCTAssertEqual(tree.childNames(of: "/l", after: nil, limit: .max).names, ordered)
        for name in ["a", "w0000000000x", "z"] { XCTAssertTrue(tree.insertIfAbsent("/l/" + name, node)) }
        XCTAssertEqual(tree.childNames(of: "/l", after: nil, limit: .max).names, byteSorted(Set(ordered + ["a", "w0000000000x", "z"])))
        XCTAssertEqual(tree.childNames(of: "/l", after: ordered.last, limit: 10).names, ["z"])
    }

    /// The namespace's listing and `childNames(of:)` come from the tree; counts stay in step.
    func testTheNamespaceListsWhatItHoldsAndCountsMatch() throws {
        let namespace = makeNamespace()
        let now = Time(milliseconds: 1_000)
        try namespace.create("/d", data: [], mode: .persistent, session: 0, now: now)
        for name in ["b", "a", "c\u{e9}", "B"] { try namespace.create("/d/" + name, data: [], mode: .persistent, session: 0, now: now) }
        XCTAssertEqual(try namespace.children("/d").names, ["B", "a", "b", "c\u{e9}"])
        XCTAssertEqual(namespace.childNames(of: "/d"), ["B", "a", "b", "c\u{e9}"])
        XCTAssertEqual(namespace.childNames(of: "/d/a"), [])
        XCTAssertNil(namespace.childNames(of: "/none"))
        try namespace.delete("/d/ce\u{301}", expectedVersion: -1, now: now)  // another spelling of "c\u{e9}"
        XCTAssertEqual(namespace.childNames(of: "/d"), ["B", "a", "b"])
        XCTAssertEqual(try namespace.exists("/d")?.childrenCount, 3)
        assertFails(.notEmpty) { try namespace.delete("/d", expectedVersion: -1, now: now) }
    }

    /// The word-at-a-time comparison against the bytes' own order: names of every length around
    /// the eight-byte steps, sharing long prefixes, with bytes on both sides of 0x80.
    func testNameOrderIsTheBytesOrder() {
        var generator = SeededGenerator(seed: 3)
        let alphabet = ["a", "b", "0", "\u{e9}", "\u{10348}", "\u{7f}"]
        let prefixes = ["", "waiter-", "lock-0000000", "n-abcdefghijklmnop"]
        for _ in 0..<3_000 {
            let make = { () -> String in
                prefixes.randomElement(using: &generator)!
                    + (0..<Int.random(in: 0...12, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }.joined()
            }
            let left = make(), right = make()
            let expected = left.utf8.lexicographicallyPrecedes(right.utf8) ? -1 : (left.utf8.elementsEqual(right.utf8) ? 0 : 1)
            XCTAssertEqual(NameOrder.order(left, right).signum(), expected, "\(left) \(right)")
            var bytes = Array(right.utf8)
            let viaBytes = bytes.withUnsafeMutableBufferPointer { NameOrder.order(left, UnsafeBufferPointer($0)) }
            XCTAssertEqual(viaBytes.signum(), expected, "\(left) \(right)")
        }
    }

    /// Snapshot bytes in the layout of docs/RECORDS.md for the given paths, in the given order.
    private func snapshotBytes(_ paths: [String]) -> [UInt8] {
        var writer = WireWriter()
        writer.u8(NamespaceSnapshot.formatVersion)
        writer.u64(UInt64(paths.count))  // transaction
        writer.u64(0)
        writer.u64(UInt64(paths.count))
        for (index, path) in paths.enumerated() {
            writer.string(path)
            writer.u8(NodeKind.persistent.rawValue)
            for _ in 0..<5 { writer.u64(UInt64(index)) }
            writer.i32(0)
            writer.i32(0)
            writer.u64(0)
            writer.u64(0)
            writer.blob([UInt8(index)])
        }
        return writer.bytes
    }

    /// Recovery builds each parent's entries from the snapshot's order: a name given twice is
    /// refused whether the children came in order or not, and children out of order are sorted
    /// (and counted) as if they had come in order.
    func testASnapshotsChildrenAreSortedCountedAndNeverDuplicated() throws {
        let now = Time(milliseconds: 1_000)
        for paths in [["/", "/a", "/a"], ["/", "/b", "/a", "/b"], ["/", "/d", "/d/x", "/d/y", "/d/x"]] {
            XCTAssertThrowsError(try Namespace(configuration: makeConfiguration(), now: now,
                                               recoveringFrom: snapshotBytes(paths), records: [[UInt8]]()), "\(paths)") { error in
                XCTAssertTrue("\(error)".contains("duplicate node"), "\(error)")
            }
        }
        let restored = try Namespace(configuration: makeConfiguration(), now: now,
                                     recoveringFrom: snapshotBytes(["/", "/c", "/a", "/a/z", "/a/y", "/b"]), records: [[UInt8]]())
        XCTAssertEqual(try restored.children("/").names, ["a", "b", "c"])
        XCTAssertEqual(try restored.children("/a").names, ["y", "z"])
        XCTAssertEqual(try restored.exists("/")?.childrenCount, 3)
        XCTAssertEqual(try restored.exists("/a")?.childrenCount, 2)
        XCTAssertEqual(try restored.get("/a/y").data, [4])
        try restored.delete("/a/z", expectedVersion: -1, now: now)
        XCTAssertEqual(restored.childNames(of: "/a"), ["y"])
        XCTAssertEqual(try restored.exists("/a")?.childrenCount, 1)
    }
}
