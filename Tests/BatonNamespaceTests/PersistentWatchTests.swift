import BatonNamespace
import BatonProtocol
import XCTest

/// Persistent and recursive watches (PROTOCOL.md §11.1, ZooKeeper 3.6 `addWatch`).
final class PersistentWatchTests: XCTestCase {
    let now = Time(milliseconds: 1_000)
    let alice = Watcher.session(1)
    let bob = Watcher.session(2)

    func testPersistentWatchFiresEveryTimeForEveryEventOfItsNode() throws {
        let namespace = makeNamespace()
        try namespace.addPersistentWatch(alice, path: "/a", mode: .persistent)
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        try namespace.set("/a", data: [1], expectedVersion: -1, now: now)
        try namespace.set("/a", data: [2], expectedVersion: -1, now: now)
        try namespace.create("/a/b", data: [], mode: .persistent, session: 0, now: now)
        try namespace.set("/a/b", data: [1], expectedVersion: -1, now: now)
        try namespace.delete("/a/b", expectedVersion: -1, now: now)
        try namespace.delete("/a", expectedVersion: -1, now: now)
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [
            .watch(alice, .created, path: "/a"),
            .watch(alice, .dataChanged, path: "/a"),
            .watch(alice, .dataChanged, path: "/a"),
            .watch(alice, .childrenChanged, path: "/a"),
            .watch(alice, .childrenChanged, path: "/a"),
            .watch(alice, .deleted, path: "/a"),
            .watch(alice, .created, path: "/a"),
        ])
        XCTAssertEqual(namespace.watchCount(of: alice), 1, "it stays registered")
    }

    func testRecursiveWatchCoversTheSubtreeButNotChildrenChanged() throws {
        let namespace = makeNamespace()
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        try namespace.addPersistentWatch(alice, path: "/a", mode: .recursive)
        try namespace.create("/a/b", data: [], mode: .persistent, session: 0, now: now)
        try namespace.create("/a/b/c", data: [], mode: .persistent, session: 0, now: now)
        try namespace.set("/a/b/c", data: [1], expectedVersion: -1, now: now)
        try namespace.create("/ab", data: [], mode: .persistent, session: 0, now: now)
        try namespace.set("/a", data: [1], expectedVersion: -1, now: now)
        try namespace.delete("/a/b/c", expectedVersion: -1, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [
            .watch(alice, .created, path: "/a/b"),
            .watch(alice, .created, path: "/a/b/c"),
            .watch(alice, .dataChanged, path: "/a/b/c"),
            .watch(alice, .dataChanged, path: "/a"),
            .watch(alice, .deleted, path: "/a/b/c"),
        ], "no childrenChanged, and /ab is not under /a")
    }

    func testRecursiveWatchOnTheRootSeesEverything() throws {
        let namespace = makeNamespace()
        try namespace.addPersistentWatch(alice, path: "/", mode: .recursive)
        try namespace.create("/x", data: [], mode: .persistent, session: 0, now: now)
        try namespace.create("/x/y", data: [], mode: .persistent, session: 0, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [
            .watch(alice, .created, path: "/x"), .watch(alice, .created, path: "/x/y"),
        ])
    }

    /// A recursive watch names a descendant with the watched node spelled as its watcher spelled it.
    func testRecursiveEventsKeepTheWatchersSpellingOfTheWatchedPart() throws {
        let namespace = makeNamespace()
        let composed = "/caf\u{e9}", decomposed = "/cafe\u{301}"
        try namespace.create(decomposed, data: [], mode: .persistent, session: 0, now: now)
        try namespace.addPersistentWatch(alice, path: composed, mode: .recursive)
        try namespace.create(decomposed + "/n", data: [], mode: .persistent, session: 0, now: now)
        guard case .watch(alice, .created, let path)? = watchEvents(namespace.takeOutputs()).first else {
            return XCTFail("the recursive watch should fire")
        }
        XCTAssertEqual(Array(path.utf8), Array((composed + "/n").utf8))
    }

    func testOneEventPerWatcherPerChangeAndOneShotFirst() throws {
        let namespace = makeNamespace()
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        try namespace.addPersistentWatch(alice, path: "/a", mode: .persistent)
        try namespace.addPersistentWatch(alice, path: "/", mode: .recursive)
        try namespace.addPersistentWatch(bob, path: "/a", mode: .recursive)
        _ = try namespace.get("/a", watcher: alice)
        _ = try namespace.get("/a", watcher: .internal(9))
        try namespace.set("/a", data: [1], expectedVersion: -1, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [
            .watch(alice, .dataChanged, path: "/a"),
            .watch(.internal(9), .dataChanged, path: "/a"),
            .watch(bob, .dataChanged, path: "/a"),
        ])
        XCTAssertEqual(namespace.watchCount(of: alice), 2, "the one-shot went, both persistent stay")
    }

    func testRemovalAndNoWatch() throws {
        let namespace = makeNamespace()
        try namespace.addPersistentWatch(alice, path: "/a", mode: .persistent)
        try namespace.addPersistentWatch(alice, path: "/a", mode: .persistent)
        XCTAssertEqual(namespace.watchCount(of: alice), 1, "adding twice holds one")
        assertFails(.noWatch) { try namespace.removePersistentWatch(self.alice, path: "/a", mode: .recursive) }
        assertFails(.noWatch) { try namespace.removePersistentWatch(self.bob, path: "/a", mode: .persistent) }
        try namespace.removePersistentWatch(alice, path: "/a", mode: .persistent)
        assertFails(.noWatch) { try namespace.removePersistentWatch(self.alice, path: "/a", mode: .persistent) }
        assertFails(.invalidPath) { try namespace.addPersistentWatch(self.alice, path: "a", mode: .persistent) }
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [])
        XCTAssertEqual(namespace.watchCount(of: alice), 0)
    }

    func testSessionEndRemovesThem() throws {
        let namespace = makeNamespace()
        let session = try namespace.openSession(timeoutMilliseconds: 0, now: now)
        let watcher = Watcher.session(session.id)
        try namespace.addPersistentWatch(watcher, path: "/a", mode: .persistent)
        try namespace.addPersistentWatch(watcher, path: "/", mode: .recursive)
        namespace.closeSession(session.id, now: now)
        XCTAssertEqual(namespace.watchCount(of: watcher), 0)
        try namespace.create("/a", data: [], mode: .persistent, session: 0, now: now)
        XCTAssertEqual(watchEvents(namespace.takeOutputs()), [])
    }

    func testTheyShareTheSessionWatchLimitWithOneShotWatches() throws {
        let namespace = makeNamespace { $0.limits.watchesPerSessionMax = 2 }
        try namespace.addPersistentWatch(alice, path: "/a", mode: .persistent)
        _ = try namespace.exists("/b", watcher: alice)
        assertFails(.tooManyWatches) { try namespace.addPersistentWatch(self.alice, path: "/c", mode: .recursive) }
        assertFails(.tooManyWatches) { try namespace.exists("/c", watcher: self.alice) }
        XCTAssertNoThrow(try namespace.addPersistentWatch(alice, path: "/a", mode: .persistent), "held already")
        try namespace.removePersistentWatch(alice, path: "/a", mode: .persistent)
        XCTAssertNoThrow(try namespace.addPersistentWatch(alice, path: "/c", mode: .recursive))
    }
}
