import BatonNamespace
import BatonProtocol
import BatonTestSupport
import BatonZooKeeper
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The ZooKeeper client against a real 3-member ensemble, driven by poll(2) on the test's thread.
final class ZooKeeperClientTests: XCTestCase {
    /// One ensemble for the class; each test uses its own chroot.
    static let shared = SharedEnsemble()
    var ensemble: ZooKeeperEnsemble { get throws { try Self.shared.ensemble() } }

    override class func tearDown() {
        shared.stop()
        super.tearDown()
    }

    func testAddressParsing() throws {
        let address = try ZooKeeperAddress(parsing: "zookeeper://10.0.0.1:2181,10.0.0.2:2181/baton/prod/")
        XCTAssertEqual(address.hosts, "10.0.0.1:2181,10.0.0.2:2181")
        XCTAssertEqual(address.chroot, "/baton/prod")
        XCTAssertEqual(try ZooKeeperAddress(parsing: "zookeeper://h:1").chroot, "")
        for bad in ["zk://h:1", "zookeeper://", "zookeeper://h", "zookeeper://h:0", "zookeeper://h:1,", "zookeeper://h:1/a//b", "zookeeper://h:1/.."] {
            XCTAssertThrowsError(try ZooKeeperAddress(parsing: bad), bad)
        }
    }

    func testChrootIsCreatedAndEveryOperationWorksInsideIt() throws {
        let test = try TestClient(try ensemble, chroot: "/c1/baton")
        XCTAssertNotEqual(test.client.sessionID, 0)
        guard case .connected(let session, _)? = test.events.first else { return XCTFail("\(test.events)") }
        XCTAssertEqual(session, test.client.sessionID)

        // The chroot exists, seen from outside it.
        let outside = try TestClient(try ensemble)
        let chroot: Result<Stat?, ReplyError> = try outside.await("exists") { outside.client.exists(path: "/c1/baton", watch: nil, completion: $0) }
        XCTAssertNotNil(try chroot.get())

        let client = test.client
        let created: Result<(path: String, stat: Stat), ReplyError> = try test.await("create") {
            client.create(path: "/a", data: [1, 2], mode: .persistent, completion: $0)
        }
        XCTAssertEqual(try created.get().path, "/a", "paths come back relative to the chroot")
        XCTAssertEqual(try created.get().stat.dataLength, 2)
        let again: Result<(path: String, stat: Stat), ReplyError> = try test.await("create again") {
            client.create(path: "/a", data: [], mode: .persistent, completion: $0)
        }
        XCTAssertEqual(again.failureCode, .nodeExists)

        let sequential: Result<(path: String, stat: Stat), ReplyError> = try test.await("sequential") {
            client.create(path: "/a/s-", data: [], mode: .ephemeralSequential, completion: $0)
        }
        XCTAssertEqual(try sequential.get().path, "/a/s-0000000000")
        XCTAssertEqual(try sequential.get().stat.ephemeralOwner, client.sessionID)
        XCTAssertEqual(try sequential.get().stat.kind, .ephemeral)
        let container: Result<(path: String, stat: Stat), ReplyError> = try test.await("container") {
            client.create(path: "/box", data: [], mode: .container, completion: $0)
        }
        XCTAssertEqual(try container.get().path, "/box")
        let underEphemeral: Result<(path: String, stat: Stat), ReplyError> = try test.await("child of ephemeral") {
            client.create(path: "/a/s-0000000000/x", data: [], mode: .persistent, completion: $0)
        }
        XCTAssertEqual(underEphemeral.failureCode, .ephemeralParent)

        let set: Result<Stat, ReplyError> = try test.await("set") { client.setData(path: "/a", data: [9], expectedVersion: 0, completion: $0) }
        XCTAssertEqual(try set.get().version, 1)
        let stale: Result<Stat, ReplyError> = try test.await("stale set") { client.setData(path: "/a", data: [8], expectedVersion: 0, completion: $0) }
        XCTAssertEqual(stale.failureCode, .badVersion)
        let got: Result<(data: [UInt8], stat: Stat), ReplyError> = try test.await("get") { client.getData(path: "/a", watch: nil, completion: $0) }
        XCTAssertEqual(try got.get().data, [9])
        let missing: Result<(data: [UInt8], stat: Stat), ReplyError> = try test.await("get missing") { client.getData(path: "/nope", watch: nil, completion: $0) }
        XCTAssertEqual(missing.failureCode, .noNode)
        let absent: Result<Stat?, ReplyError> = try test.await("exists missing") { client.exists(path: "/nope", watch: nil, completion: $0) }
        XCTAssertNil(try absent.get())

        let children: Result<(names: [String], stat: Stat), ReplyError> = try test.await("children") { client.children(path: "/", watch: nil, completion: $0) }
        XCTAssertEqual(Set(try children.get().names), ["a", "box"])
        XCTAssertEqual(try children.get().stat.childrenCount, 2)

        let notEmpty: Result<Void, ReplyError> = try test.await("delete non-empty") { client.delete(path: "/a", expectedVersion: -1, completion: $0) }
        XCTAssertEqual(notEmpty.failureCode, .notEmpty)
        let wrongVersion: Result<Void, ReplyError> = try test.await("delete stale") { client.delete(path: "/box", expectedVersion: 3, completion: $0) }
        XCTAssertEqual(wrongVersion.failureCode, .badVersion)
        let deleted: Result<Void, ReplyError> = try test.await("delete") { client.delete(path: "/box", expectedVersion: 0, completion: $0) }
        XCTAssertNoThrow(try deleted.get())

        // Multi: all or nothing; the failing operation's index.
        let failed: Result<[MultiResult], MultiFailure> = try test.await("multi failing") {
            client.multi([.create(path: "/m1", data: [], mode: .persistent), .check(path: "/a", expectedVersion: 7)], completion: $0)
        }
        guard case .failure(let failure) = failed else { return XCTFail("multi with a bad check succeeded") }
        XCTAssertEqual(failure.index, 1)
        XCTAssertEqual(failure.error.code, .badVersion)
        let notCreated: Result<Stat?, ReplyError> = try test.await("exists m1") { client.exists(path: "/m1", watch: nil, completion: $0) }
        XCTAssertNil(try notCreated.get(), "a failed multi changes nothing")
        let done: Result<[MultiResult], MultiFailure> = try test.await("multi") {
            client.multi([.create(path: "/m-", data: [7], mode: .persistentSequential), .set(path: "/a", data: [1], expectedVersion: 1),
                          .check(path: "/a", expectedVersion: 2), .delete(path: "/a/s-0000000000", expectedVersion: -1)], completion: $0)
        }
        let results = try done.get()
        XCTAssertEqual(results.count, 4)
        guard case .created(let path, _) = results[0], case .set(let stat) = results[1] else { return XCTFail("\(results)") }
        XCTAssertTrue(path.hasPrefix("/m-00000000"), path)
        XCTAssertEqual(stat.version, 2)
        XCTAssertEqual(results[2], .checked)
        XCTAssertEqual(results[3], .deleted)
        XCTAssertGreaterThan(client.requestCount, 15)
    }

    func testWatchesFireOnceAndBeforeLaterReplies() throws {
        let ensemble = try ensemble
        let watcher = try TestClient(ensemble, chroot: "/c2")
        let writer = try TestClient(ensemble, chroot: "/c2")
        let both = [watcher.client, writer.client]
        _ = try PollDriver.await(both, "create") { writer.client.create(path: "/n", data: [], mode: .persistent, completion: $0) } as Result<(path: String, stat: Stat), ReplyError>

        // The watcher's server may not have applied the create yet (reads are served locally): wait until
        // it shows /n, or the exists watch below would be one on a missing node.
        for attempt in 0..<200 {
            let seen: Result<Stat?, ReplyError> = try PollDriver.await(both, "exists /n") {
                watcher.client.exists(path: "/n", watch: nil, completion: $0)
            }
            if try seen.get() != nil { break }
            XCTAssertLessThan(attempt, 199, "the watcher's server never showed /n")
            usleep(10_000)
        }
        var fired: [String] = []
        let exists: Result<Stat?, ReplyError> = try PollDriver.await(both, "exists watch") {
            watcher.client.exists(path: "/n", watch: { fired.append("exists \($0)") }, completion: $0)
        }
        XCTAssertNotNil(try exists.get())
        let children: Result<(names: [String], stat: Stat), ReplyError> = try PollDriver.await(both, "children watch") {
            watcher.client.children(path: "/n", watch: { fired.append("children \($0)") }, completion: $0)
        }
        XCTAssertEqual(try children.get().names, [])
        let missing: Result<Stat?, ReplyError> = try PollDriver.await(both, "exists watch on missing") {
            watcher.client.exists(path: "/later", watch: { fired.append("later \($0)") }, completion: $0)
        }
        XCTAssertNil(try missing.get())
        XCTAssertEqual(watcher.client.watchCount, 3)

        _ = try PollDriver.await(both, "set") { writer.client.setData(path: "/n", data: [1], expectedVersion: -1, completion: $0) } as Result<Stat, ReplyError>
        _ = try PollDriver.await(both, "child") { writer.client.create(path: "/n/c", data: [], mode: .persistent, completion: $0) } as Result<(path: String, stat: Stat), ReplyError>
        _ = try PollDriver.await(both, "later") { writer.client.create(path: "/later", data: [], mode: .persistent, completion: $0) } as Result<(path: String, stat: Stat), ReplyError>
        // ZooKeeper's guarantee: a reply that shows a change comes after the watch event for it. The
        // watcher's server may lag the writer's (reads are served locally), so read until each change shows.
        func firedBefore(_ what: String, shows: @escaping (@escaping (Bool) -> Void) -> Void) throws {
            for _ in 0..<200 {
                var seen: [String] = []
                let showed: Result<Bool, ReplyError> = try PollDriver.await(both, "read \(what)") { done in
                    shows { changed in seen = fired; done(.success(changed)) }
                }
                if try showed.get() {
                    XCTAssertTrue(seen.contains(what), "a reply showed the change before the event \(what): \(seen)")
                    return
                }
                usleep(10_000)
            }
            XCTFail("the watcher's server never showed the change behind \(what)")
        }
        try firedBefore("exists dataChanged") { changed in
            watcher.client.getData(path: "/n", watch: nil) { changed((try? $0.get().data) == [1]) }
        }
        try firedBefore("children childrenChanged") { changed in
            watcher.client.children(path: "/n", watch: nil) { changed((try? $0.get().names) == ["c"]) }
        }
        try firedBefore("later created") { changed in
            watcher.client.exists(path: "/later", watch: nil) { changed(((try? $0.get()) ?? nil) != nil) }
        }
        XCTAssertEqual(Set(fired), ["exists dataChanged", "children childrenChanged", "later created"])
        XCTAssertEqual(watcher.client.watchCount, 0)

        // One-shot: a second change fires nothing more.
        _ = try PollDriver.await(both, "set again") { writer.client.setData(path: "/n", data: [2], expectedVersion: -1, completion: $0) } as Result<Stat, ReplyError>
        _ = try PollDriver.await(both, "read") { watcher.client.getData(path: "/n", watch: nil, completion: $0) } as Result<(data: [UInt8], stat: Stat), ReplyError>
        XCTAssertEqual(fired.count, 3)
    }

    func testDigestCredentialsProtectWhatBatonCreates() throws {
        let ensemble = try ensemble
        let owner = try TestClient(ensemble, chroot: "/c3", digest: "baton:secret")
        let created: Result<(path: String, stat: Stat), ReplyError> = try owner.await("create") {
            owner.client.create(path: "/private", data: [1], mode: .persistent, completion: $0)
        }
        XCTAssertNoThrow(try created.get())
        let sameIdentity = try TestClient(ensemble, chroot: "/c3", digest: "baton:secret")
        let read: Result<(data: [UInt8], stat: Stat), ReplyError> = try sameIdentity.await("read") {
            sameIdentity.client.getData(path: "/private", watch: nil, completion: $0)
        }
        XCTAssertEqual(try read.get().data, [1])
        let outsider = try TestClient(ensemble)
        let denied: Result<(data: [UInt8], stat: Stat), ReplyError> = try outsider.await("read outside") {
            outsider.client.getData(path: "/c3/private", watch: nil, completion: $0)
        }
        XCTAssertEqual(denied.failureCode, .notAuthorized)
        let deniedWrite: Result<(path: String, stat: Stat), ReplyError> = try outsider.await("create in protected chroot") {
            outsider.client.create(path: "/c3/x", data: [], mode: .persistent, completion: $0)
        }
        XCTAssertEqual(deniedWrite.failureCode, .notAuthorized)
    }

    func testSessionIsSuspendedThenReconnectedToAnotherMember() throws {
        let ensemble = try ensemble
        let test = try TestClient(ensemble, chroot: "/c5", sessionTimeoutMilliseconds: 4_000)
        let client = test.client
        let created: Result<(path: String, stat: Stat), ReplyError> = try test.await("ephemeral") {
            client.create(path: "/e", data: [], mode: .ephemeral, completion: $0)
        }
        XCTAssertNoThrow(try created.get())
        // Freeze the member the client talks to: it misses its pings, suspends, and moves to another.
        let server = try XCTUnwrap(client.currentServer)
        let frozen = try XCTUnwrap(ensemble.members.first { server.hasSuffix(":\($0.clientPort)") }?.id)
        ensemble.signal(frozen, SIGSTOP)
        defer { ensemble.signal(frozen, SIGCONT) }
        try PollDriver.run([client], "suspended") { client.state == .suspended }
        try PollDriver.run([client], "reconnected", timeoutSeconds: 60) { client.state == .connected || client.state == .dead }
        XCTAssertEqual(Array(test.events.dropFirst()), [.suspended, .reconnected])
        XCTAssertFalse(client.currentServer?.hasSuffix(":\(ensemble.member(frozen).clientPort)") ?? true)
        let after: Result<Stat?, ReplyError> = try test.await("ephemeral kept") { client.exists(path: "/e", watch: nil, completion: $0) }
        XCTAssertEqual(try after.get()?.ephemeralOwner, client.sessionID, "the session (and its ephemeral) survived")
    }

    func testSessionExpiresWhileItsOnlyServerIsFrozen() throws {
        let ensemble = try ensemble
        let leader = try XCTUnwrap(ensemble.leader())
        let follower = ensemble.members.map(\.id).first { $0 != leader }!
        let test = try TestClient(ensemble, chroot: "/c4", member: follower, sessionTimeoutMilliseconds: 1_000)
        let client = test.client
        let created: Result<(path: String, stat: Stat), ReplyError> = try test.await("ephemeral") {
            client.create(path: "/e", data: [], mode: .ephemeral, completion: $0)
        }
        XCTAssertNoThrow(try created.get())

        // Frozen past the session timeout: the others expire the session; the client learns it on reconnect.
        ensemble.signal(follower, SIGSTOP)
        try PollDriver.run([client], "suspended") { client.state == .suspended }
        let during: Result<Stat?, ReplyError> = try test.await("request while suspended") {
            client.exists(path: "/e", watch: nil, completion: $0)
        }
        XCTAssertEqual(during.failureCode, .storageFailure)
        let observer = try TestClient(ensemble, chroot: "/c4", member: leader)
        try PollDriver.run([observer.client], "ephemeral removed by expiry", timeoutSeconds: 60) {
            var gone: Bool?
            observer.client.exists(path: "/e", watch: nil) { gone = (try? $0.get()) == .some(nil) }
            while gone == nil { PollDriver.step([observer.client]) }
            return gone!
        }
        ensemble.signal(follower, SIGCONT)
        try PollDriver.run([client], "expired", timeoutSeconds: 60) { client.state == .dead }
        XCTAssertEqual(Array(test.events.dropFirst()), [.suspended, .expired])
        let dead: Result<Stat?, ReplyError> = try test.await("request on a dead client") { client.exists(path: "/", watch: nil, completion: $0) }
        XCTAssertEqual(dead.failureCode, .storageFailure)
    }
}

extension Result {
    var failureCode: ErrorCode? {
        guard case .failure(let error) = self else { return nil }
        return (error as? ReplyError)?.code
    }
}
