@testable import BatonNamespace
import BatonProtocol
import BatonTestSupport
import XCTest

/// The tree by parent and name against a plain dictionary by full path, across chunk splits,
/// removals, copies (snapshots, rollback points) and recovery's sorted build.
final class NodeTreeTests: XCTestCase {
    private func node(_ version: Int32, kind: NodeKind = .persistent) -> Node {
        var stat = Stat()
        stat.version = version
        stat.kind = kind
        return Node(data: [UInt8(truncatingIfNeeded: version)], stat: stat)
    }

    private func byteOrder(_ left: String, _ right: String) -> Bool { left.utf8.lexicographicallyPrecedes(right.utf8) }

    func testRandomChangesMatchADictionaryAndCopiesStayUnchanged() {
        var generator = SeededGenerator(seed: 11)
        var tree = NodeTree(root: node(0))
        var model: [String: Node] = ["/": node(0)]
        let parents = ["/a", "/b/c", "/é"]
        for path in ["/a", "/b", "/b/c", "/é"] {
            tree[path] = node(-1)
            model[path] = node(-1)
        }
        var copies: [(NodeTree, [String: Node])] = []
        for step in 1...6_000 {
            let parent = parents.randomElement(using: &generator)!
            let path = parent + "/n\(Int.random(in: 0..<400, using: &generator))"
            switch Int.random(in: 0..<10, using: &generator) {
            case 0..<5:
                tree[path] = node(Int32(step))
                model[path] = node(Int32(step))
            case 5..<7:
                XCTAssertEqual(tree.removeValue(forKey: path), model.removeValue(forKey: path), path)
            case 7:
                tree[path] = nil
                model[path] = nil
            default:
                if tree[path] != nil { tree[path]!.data = [9, 9] }
                if model[path] != nil { model[path]!.data = [9, 9] }
            }
            XCTAssertEqual(tree[path], model[path], path)
            if step % 1_500 == 0 { copies.append((tree, model)) }
        }
        XCTAssertGreaterThan(model.keys.filter { $0.hasPrefix("/a/") }.count, NodeTree.chunkMax, "several chunks")
        for (copy, expected) in copies + [(tree, model)] {
            XCTAssertEqual(copy.count, expected.count)
            for (path, value) in expected { XCTAssertEqual(copy[path], value, path) }
            // `walk` visits each node once, children in name order after their parent.
            var visited: [String] = []
            copy.walk { path, _ in visited.append(path); return true }
            XCTAssertEqual(visited.count, expected.count)
            XCTAssertEqual(Set(visited), Set(expected.keys))
            for parent in parents {
                let children = visited.filter { $0 != "/" && NamespacePath.parent(of: $0) == parent }
                XCTAssertEqual(children, children.sorted(by: byteOrder), parent)
            }
        }
        XCTAssertEqual(Set(tree.paths { $0.version % 2 == 0 }), Set(model.filter { $0.value.version % 2 == 0 }.keys))
    }

    /// `Namespace.parentPaths` keeps its last answer and checks a path against it eight bytes at a
    /// time: over paths that switch parents, nest, end in a slash (a sequential prefix) or have a
    /// slash at every offset of a word, it answers as `NodePath.parent` does, twice.
    func testParentPathsMatchNodePathParentAcrossParents() {
        let namespace = makeNamespace()
        var generator = SeededGenerator(seed: 7)
        let parents = ["/", "/a", "/locks/orders", "/locks/orders/x", "/locks/ordersx", "/locks/order", "/é/ü"]
        for _ in 0..<4_000 {
            let parent = parents.randomElement(using: &generator)!
            let nameLength = Int.random(in: 0..<20, using: &generator)
            var name = String((0..<nameLength).map { _ in "abc0/".randomElement(using: &generator)! })
            while name.first == "/" { name.removeFirst() } // valid paths only: no empty segment after the root
            let path = (parent == "/" ? "" : parent) + "/" + name
            let expected = NodePath.parent(of: path)
            let grandparent: String? = expected == "/" ? nil : NodePath.parent(of: expected)
            for _ in 0..<2 {
                let answer = namespace.parentPaths(of: path)
                XCTAssertEqual(answer.parent, expected, path)
                XCTAssertEqual(answer.grandparent, grandparent, path)
                XCTAssertEqual(namespace.parentPath(of: path), expected, path)
            }
        }
        for length in 0..<40 {
            for slash in [nil] + Array(0..<length) {
                var bytes = [UInt8](repeating: UInt8(ascii: "x"), count: length)
                if let slash { bytes[slash] = UInt8(ascii: "/") }
                XCTAssertEqual(bytes.withUnsafeBufferPointer { Namespace.containsSlash($0) }, slash != nil, "\(length) \(String(describing: slash))")
            }
        }
    }

    func testANameIsFoundByAnotherSpellingOfIt() {
        var tree = NodeTree(root: node(0))
        tree["/d/caf\u{e9}"] = node(1)
        tree["/d/cafe"] = node(2)
        XCTAssertEqual(tree["/d/cafe\u{301}"], node(1), "the decomposed spelling names the same node")
        tree["/d/cafe\u{301}"] = node(3)
        XCTAssertEqual(tree.count, 3, "replaced, not added")
        XCTAssertEqual(tree.removeValue(forKey: "/d/cafe\u{301}"), node(3))
        XCTAssertNil(tree["/d/caf\u{e9}"])
    }

    func testAdoptedChildrenAreFoundAndChangedLikeInsertedOnes() {
        var tree = NodeTree(root: node(0))
        tree["/d"] = node(-1)
        let names = (0..<1_000).map { "n\($0)" }.sorted(by: byteOrder)
        tree.adopt("/d", sortedChildren: names.enumerated().map { NodeTree.Entry(name: $1, node: node(Int32($0))) })
        XCTAssertEqual(tree.count, 1_002)
        for (index, name) in names.enumerated() { XCTAssertEqual(tree["/d/" + name], node(Int32(index)), name) }
        tree["/d/n500"] = nil
        tree["/d/m"] = node(7)
        XCTAssertEqual(tree.count, 1_002)
        var order: [String] = []
        tree.walk { path, _ in order.append(path); return true }
        XCTAssertEqual(Array(order.dropFirst(2)), (names.filter { $0 != "n500" } + ["m"]).sorted(by: byteOrder).map { "/d/" + $0 })
    }

    /// A directory emptied by a removal stays while its node exists (a lock's directory empties and
    /// fills once per pair) and goes with the node; a miss under a missing or childless node makes none.
    func testAnEmptiedDirectoryStaysWithItsNodeAndGoesWithIt() throws {
        let namespace = makeNamespace()
        let now = Time(milliseconds: 1_000)
        try namespace.create("/d", data: [], mode: .container, session: 0, now: now)
        XCTAssertEqual(namespace.nodes.directoryCount, 1, "the root's")
        for _ in 0..<3 {
            let child = try namespace.create("/d/n-", data: [], mode: .persistentSequential, session: 0, now: now).path
            XCTAssertEqual(namespace.nodes.directoryCount, 2)
            try namespace.delete(child, expectedVersion: -1, now: now)
            XCTAssertEqual(namespace.nodes.directoryCount, 2, "kept, empty")
            XCTAssertEqual(try namespace.children("/d").names, [])
        }
        let snapshot = namespace.snapshot().serialize()
        assertFails(.noNode) { try namespace.delete("/missing/x", expectedVersion: -1, now: now) }
        assertFails(.noNode) { try namespace.set("/missing/x", data: [], expectedVersion: -1, now: now) }
        assertFails(.noNode) { try namespace.delete("/d/x/y", expectedVersion: -1, now: now) }
        assertFails(.noNode) { try namespace.create("/missing/x", data: [], mode: .persistent, session: 0, now: now) }
        XCTAssertEqual(namespace.nodes.directoryCount, 2, "a miss leaves no directory")
        namespace.tick(now: Time(milliseconds: 3_000))
        XCTAssertNil(namespace.node(at: "/d"), "swept")
        XCTAssertEqual(namespace.nodes.directoryCount, 1, "the emptied directory went with its node; the root's stays, empty")
        XCTAssertEqual(try namespace.children("/").names, [])
        let restored = try Namespace(configuration: makeConfiguration(), now: now, recoveringFrom: snapshot, records: [[UInt8]]())
        XCTAssertEqual(try restored.children("/").names, ["d"])
        try restored.create("/d/m", data: [], mode: .persistent, session: 0, now: now)
        XCTAssertEqual(try restored.children("/d").names, ["m"])
    }

    /// A directory emptied by a removal keeps its storage for the next insert (`Directory.spare`):
    /// filled again, emptied again, copied at every step (a snapshot, a rollback point), each copy keeps
    /// what it had, and a large emptied chunk is not kept.
    func testADirectoryEmptiedAndFilledAgainKeepsCopiesApart() {
        var tree = NodeTree(root: node(0))
        tree["/d"] = node(-1)
        var copies: [(NodeTree, [String: Node])] = []
        var model: [String: Node] = [:]
        for round in 0..<6 {
            let names = (0..<(round % 3 + 1)).map { "w\(round)-\($0)" }
            for (index, name) in names.enumerated() {
                XCTAssertTrue(tree.insertIfAbsent("/d/" + name) { node(Int32(round * 10 + index)) })
                model["/d/" + name] = node(Int32(round * 10 + index))
                copies.append((tree, model))
            }
            for name in names.reversed() {
                XCTAssertEqual(tree.removeValue(forKey: "/d/" + name), model.removeValue(forKey: "/d/" + name))
                copies.append((tree, model))
            }
            XCTAssertEqual(tree.childNames(of: "/d", after: nil, limit: .max).names, [])
        }
        for (copy, expected) in copies {
            XCTAssertEqual(copy.childNames(of: "/d", after: nil, limit: .max).names,
                           expected.keys.map { String($0.dropFirst(3)) }.sorted(by: byteOrder))
            for (path, value) in expected { XCTAssertEqual(copy[path], value, path) }
            XCTAssertEqual(copy.count, expected.count + 2)
        }
        // A chunk of many entries emptied: its storage is not kept (only small ones are).
        let many = (0..<50).map { "m\($0)" }
        for name in many { tree["/d/" + name] = node(1) }
        for name in many { tree["/d/" + name] = nil }
        XCTAssertEqual(tree.directorySpareCapacity(of: "/d"), 0)
        tree["/d/one"] = node(2)
        tree["/d/one"] = nil
        XCTAssertGreaterThan(tree.directorySpareCapacity(of: "/d"), 0, "a one-entry chunk's storage is kept")
        XCTAssertLessThanOrEqual(tree.directorySpareCapacity(of: "/d"), NodeTree.Directory.spareCapacityMax)
        tree["/d/two"] = node(3)
        XCTAssertEqual(tree["/d/two"], node(3))
        XCTAssertEqual(tree.childNames(of: "/d", after: nil, limit: .max).names, ["two"])
    }

    /// `NodeTree.isRoot` is `== NamespacePath.root`, by the bytes.
    func testIsRootIsTheRootsOneByte() {
        for path in ["/", "", "x", "//", "/a", "a/", "\u{2215}", "/\u{301}", String(repeating: "/", count: 20)] {
            XCTAssertEqual(NodeTree.isRoot(path), path == NamespacePath.root, path)
        }
        var tree = NodeTree(root: node(0))
        tree["/x"] = node(1)
        XCTAssertEqual(tree["/"], node(0))
        XCTAssertEqual(tree["/x"], node(1))
    }

    func testANamespaceWithManyChildrenSurvivesASnapshotAndALaterWrite() throws {
        let namespace = makeNamespace()
        let now = Time(milliseconds: 1_000)
        try namespace.create("/d", data: [], mode: .persistent, session: 0, now: now)
        for index in 0..<700 { try namespace.create("/d/n\(index)", data: bytes("\(index)"), mode: .persistent, session: 0, now: now) }
        let snapshot = namespace.snapshot()
        let before = snapshot.serialize()
        try namespace.delete("/d/n3", expectedVersion: -1, now: now)
        try namespace.set("/d/n4", data: bytes("x"), expectedVersion: -1, now: now)
        XCTAssertEqual(snapshot.serialize(), before, "the snapshot is a value")
        let restored = try Namespace(configuration: makeConfiguration(), now: now, recoveringFrom: before, records: [[UInt8]]())
        XCTAssertEqual(restored.nodeCount, 702)
        XCTAssertEqual(try restored.get("/d/n3").data, bytes("3"))
        XCTAssertEqual(try restored.children("/d").names, (0..<700).map { "n\($0)" }.sorted(by: byteOrder))
        XCTAssertEqual(try restored.exists("/d")?.childrenCount, 700)
        // The same nodes in the same bytes (the transaction counter, bytes 1-8, restarts at its mark).
        let again = restored.snapshot().serialize()
        XCTAssertEqual(again.count, before.count)
        XCTAssertTrue(again[9...] == before[9...], "first difference at \((9..<min(again.count, before.count)).first { again[$0] != before[$0] } ?? -1)")
    }
}
