import BatonNamespace
import BatonProtocol
import XCTest

final class WatchTests: XCTestCase {
    let now = Time(milliseconds: 1_000)
    let alice = Watcher.session(1)
    let bob = Watcher.session(2)

    func testDataWatchFiresOnceOnSet() throws {
        let namespace = makeNamespace()
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        _ = namespace.takeOutputs()
        _ = try namespace.get("/a", watcher: alice)
        try namespace.set("/a", data: [1], expectedVersion: -1, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [.watch(alice, .dataChanged, path: "/a")])
        try namespace.set("/a", data: [2], expectedVersion: -1, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [], "one-shot")
        XCTAssertEqual(namespace.watchCount(of: alice), 0)
    }

    /// Spec (PROTOCOL.md §10.1, §11): canonically equivalent spellings name one node, and an event
    /// names the path as the watcher spelled it, byte for byte (Swift's `==` would not tell).
    func testEventsNameThePathAsTheWatcherSpelledIt() throws {
        let namespace = makeNamespace()
        let composed = "/caf\u{e9}", decomposed = "/cafe\u{301}"
        XCTAssertNotEqual(Array(composed.utf8), Array(decomposed.utf8))
        XCTAssertNil(try namespace.exists(composed, watcher: alice))
        XCTAssertNil(try namespace.exists(decomposed, watcher: bob))
        _ = try namespace.children("/", watcher: bob)
        try namespace.create(decomposed, data: [], mode: .persistent, session: 0, now: now)
        let created = watchEvents(namespace.takeOutputs())
        let paths = created.map { event -> [UInt8] in
            guard case .watch(_, _, let path) = event else { return [] }
            return Array(path.utf8)
        }
        XCTAssertEqual(created.count, 3)
        XCTAssertEqual(paths, [Array(composed.utf8), Array(decomposed.utf8), Array("/".utf8)])
        // A change made through the other spelling fires the watch set through this one, in its spelling.
        _ = try namespace.get(composed, watcher: alice)
        try namespace.set(decomposed, data: [1], expectedVersion: -1, now: now)
        guard case .watch(alice, .dataChanged, let path)? = watchEvents(namespace.takeOutputs()).first else {
            return XCTFail("the data watch should fire")
        }
        XCTAssertEqual(Array(path.utf8), Array(composed.utf8))
    }

    func testDataWatchFiresDeleted() throws {
        let namespace = makeNamespace()
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        _ = try namespace.exists("/a", watcher: alice)
        _ = namespace.takeOutputs()
        try namespace.delete("/a", expectedVersion: -1, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [.watch(alice, .deleted, path: "/a")])
    }

    func testExistsWatchOnMissingNodeFiresCreated() throws {
        let namespace = makeNamespace()
        XCTAssertNil(try namespace.exists("/a", watcher: alice))
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [.watch(alice, .created, path: "/a")])
        try namespace.set("/a", data: [1], expectedVersion: -1, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [])
    }

    func testGetAndChildrenOnMissingNodeSetNoWatch() throws {
        let namespace = makeNamespace()
        assertFails(.noNode) { try namespace.get("/a", watcher: self.alice) }
        assertFails(.noNode) { try namespace.children("/a", watcher: self.alice) }
        XCTAssertEqual(namespace.watchCount(of: alice), 0)
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [])
    }

    func testChildrenWatch() throws {
        let namespace = makeNamespace()
        try namespace.create("/p", data: [], mode: .persistent, session: 0, now: now)
        _ = try namespace.children("/p", watcher: alice)
        try namespace.set("/p", data: [1], expectedVersion: -1, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [], "data changes do not fire children watches")
        try namespace.create("/p/c", data: [], mode: .persistent, session: 0, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [.watch(alice, .childrenChanged, path: "/p")])
        _ = try namespace.children("/p", watcher: alice)
        try namespace.delete("/p/c", expectedVersion: -1, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [.watch(alice, .childrenChanged, path: "/p")])
        _ = try namespace.children("/p", watcher: alice)
        try namespace.delete("/p", expectedVersion: -1, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [.watch(alice, .deleted, path: "/p")])
    }

    func testDeleteNotifiesAWatcherOfDataAndChildrenOnce() throws {
        let namespace = makeNamespace()
        try namespace.create("/p", data: [], mode: .persistent, session: 0, now: now)
        _ = try namespace.get("/p", watcher: alice)
        _ = try namespace.children("/p", watcher: alice)
        _ = try namespace.children("/p", watcher: bob)
        XCTAssertEqual(namespace.watchCount(of: alice), 2)
        try namespace.delete("/p", expectedVersion: -1, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()),
                       [.watch(alice, .deleted, path: "/p"), .watch(bob, .deleted, path: "/p")])
        XCTAssertEqual(namespace.watchCount(of: alice), 0)
    }

    func testSameWatcherSamePathSameKindRegistersOnce() throws {
        let namespace = makeNamespace()
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        _ = try namespace.get("/a", watcher: alice)
        _ = try namespace.get("/a", watcher: alice)
        _ = try namespace.exists("/a", watcher: alice)
        XCTAssertEqual(namespace.watchCount(of: alice), 1)
        try namespace.set("/a", data: [1], expectedVersion: -1, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [.watch(alice, .dataChanged, path: "/a")])
    }

    func testCreateFiresCreatedThenParentChildrenChanged() throws {
        let namespace = makeNamespace()
        try namespace.create("/p", data: [], mode: .persistent, session: 0, now: now)
        _ = try namespace.exists("/p/c", watcher: alice)
        _ = try namespace.children("/p", watcher: bob)
        try namespace.create("/p/c", data: [], mode: .persistent, session: 0, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()),
                       [.watch(alice, .created, path: "/p/c"), .watch(bob, .childrenChanged, path: "/p")])
    }

    func testWatchLimitPerSession() throws {
        let namespace = makeNamespace { $0.limits.watchesPerSessionMax = 2 }
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        _ = try namespace.get("/a", watcher: alice)
        _ = try namespace.children("/a", watcher: alice)
        assertFails(.tooManyWatches) { try namespace.exists("/b", watcher: self.alice) }
        XCTAssertNoThrow(try namespace.get("/a", watcher: alice), "an existing registration is not a new watch")
        XCTAssertNoThrow(try namespace.exists("/b", watcher: bob))
        // Internal watchers are bounded by the lock layer, not by the session limit.
        for token in 0..<5 { _ = try namespace.exists("/x\(token)", watcher: .internal(7)) }
        XCTAssertEqual(namespace.watchCount(of: .internal(7)), 5)
        // A fired watch frees its slot.
        try namespace.set("/a", data: [], expectedVersion: -1, now: now)
        XCTAssertNoThrow(try namespace.exists("/b", watcher: alice))
    }

    func testRemoveWatches() throws {
        let namespace = makeNamespace()
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        _ = try namespace.get("/a", watcher: .internal(3))
        _ = try namespace.get("/a", watcher: bob)
        namespace.removeWatches(of: .internal(3))
        try namespace.set("/a", data: [], expectedVersion: -1, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [.watch(bob, .dataChanged, path: "/a")])
    }

    func testFiredWatchesComeAfterTheirRecord() throws {
        let namespace = makeNamespace()
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        _ = namespace.takeOutputs()
        _ = try namespace.get("/a", watcher: alice)
        try namespace.set("/a", data: [9], expectedVersion: -1, now: now)
        let outputs = namespace.takeOutputs()
        XCTAssertEqual(outputs.count, 2)
        guard case .persist = outputs[0], case .watch = outputs[1] else { return XCTFail("\(outputs)") }
    }
}
