import XCTest
import Foundation
import BatonProtocol
import BatonTestSupport
@testable import BatonClient

/// The client against a real batond over its Unix socket (and TCP for resume), on the embedded store;
/// `ClientIntegrationZooKeeperTests` runs every test again on a ZooKeeper sidecar. Where the stores
/// are documented to differ (PROTOCOL.md §16), a test says what each one does (`daemon.isZooKeeper`).
class ClientIntegrationTests: LiveDaemonTestCase {
    /// Where the daemon keeps the namespace: a subclass per store.
    class var store: DaemonStore { .embedded }

    override func makeDaemon() throws -> LiveDaemon {
        // Each test under a chroot of its own: a shared ZooKeeper outlives the test's sidecar.
        let chroot = "/" + name.filter { $0.isLetter || $0.isNumber } + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return try LiveDaemon(tcp: name.contains("TCP"), store: Self.store, chroot: chroot)
    }

    func connect(_ name: String = "test", timeout: Duration = .seconds(10), heartbeats: Bool = true,
                 keepOnDisconnect: Bool = false) async throws -> BatonClient {
        try await BatonClient.connect(to: daemon.endpoint, options: ClientOptions(
            clientName: name, sessionTimeout: timeout, keepOnDisconnect: keepOnDisconnect, heartbeats: heartbeats))
    }

    func testNodeOperationsRoundTrip() async throws {
        let client = try await connect()
        try await client.ping()
        let created = try await client.create("/app", data: Array("v1".utf8))
        XCTAssertEqual(created, "/app")
        let (data, stat) = try await client.get("/app")
        XCTAssertEqual(data, Array("v1".utf8))
        XCTAssertEqual(stat.version, 0)
        XCTAssertEqual(stat.dataLength, 2)
        let newStat = try await client.set("/app", data: Array("v22".utf8), version: 0)
        XCTAssertEqual(newStat.version, 1)
        let updated = try await client.get("/app").data
        XCTAssertEqual(updated, Array("v22".utf8))

        let first = try await client.create("/app/job-", data: [UInt8](), mode: .persistentSequential)
        let second = try await client.create("/app/job-", data: [UInt8](), mode: .persistentSequential)
        XCTAssertTrue(first.hasPrefix("/app/job-") && first.count == "/app/job-".count + 10, first)
        XCTAssertLessThan(first, second)
        let ephemeral = try await client.create("/app/mine", mode: .ephemeral)
        let owner = try await client.exists(ephemeral)?.ephemeralOwner
        XCTAssertEqual(owner, client.session.id)
        let names = try await client.children("/app")
        XCTAssertEqual(Set(names),
                       Set([String(first.dropFirst(5)), String(second.dropFirst(5)), "mine"]))

        let results = try await client.multi([
            .check(path: "/app", expectedVersion: 1),
            .create(path: "/app/multi", data: [1], mode: .persistent),
            .set(path: "/app/multi", data: [2], expectedVersion: 0),
            .delete(path: first, expectedVersion: -1),
        ])
        XCTAssertEqual(results.count, 4)
        let multiData = try await client.get("/app/multi").data
        XCTAssertEqual(multiData, [2])
        let firstGone = try await client.exists(first)
        XCTAssertNil(firstGone)

        try await client.delete("/app/multi")
        let multiGone = try await client.exists("/app/multi")
        XCTAssertNil(multiGone)
        try await client.closeSession()
        XCTAssertTrue(client.isClosed)

        // The closed session's ephemeral node went with it.
        let other = try await connect("other")
        let ephemeralGone = try await other.exists(ephemeral)
        XCTAssertNil(ephemeralGone)
    }

    func testFailedMultiChangesNothing() async throws {
        let client = try await connect()
        try await client.create("/m", data: [0])
        do {
            _ = try await client.multi([.set(path: "/m", data: [9], expectedVersion: 0),
                                        .delete(path: "/missing", expectedVersion: -1)])
            XCTFail("multi with a failing operation succeeded")
        } catch {
            XCTAssertEqual(error.code, .noNode)
        }
        let unchanged = try await client.get("/m").data
        XCTAssertEqual(unchanged, [0])
    }

    /// The embedded store takes a node of `dataBytesMax`; ZooKeeper's packet limit is just below
    /// it, so a sidecar refuses it before it reaches ZooKeeper, and keeps its connection (a server
    /// drops a client that sends more): its holds are not disturbed (PROTOCOL.md §16).
    func testTheLargestNodeEachStoreTakes() async throws {
        let client = try await connect()
        let holder = try await connect("holder")
        let events = holder.events()
        let grant = try await holder.acquire("/locks/big")
        try await client.create("/big")
        try await client.create("/big/under", data: [UInt8](repeating: 7, count: 1_000_000))
        let largest = [UInt8](repeating: 8, count: Limits.default.dataBytesMax)
        do {
            try await client.create("/big/largest", data: largest)
            XCTAssertFalse(daemon.isZooKeeper, "ZooKeeper took a packet over its jute.maxbuffer")
            let read = try await client.get("/big/largest").data
            XCTAssertEqual(read.count, largest.count)
        } catch {
            XCTAssertTrue(daemon.isZooKeeper, "\(error)")
            XCTAssertEqual(error.code, .dataTooLarge)
        }
        do {
            _ = try await client.multi([.set(path: "/big/under", data: [UInt8](repeating: 1, count: 530_000), expectedVersion: -1),
                                        .create(path: "/big/other", data: [UInt8](repeating: 2, count: 530_000), mode: .persistent)])
            XCTAssertFalse(daemon.isZooKeeper, "the multi is one ZooKeeper packet: over the limit")
        } catch {
            XCTAssertTrue(daemon.isZooKeeper, "\(error)")
            XCTAssertEqual(error.code, .dataTooLarge)
        }
        let under = try await client.get("/big/under").data
        XCTAssertEqual(under.count, daemon.isZooKeeper ? 1_000_000 : 530_000)
        let current = try await holder.checkToken("/locks/big", token: grant.token)
        XCTAssertTrue(current, "the hold was never in doubt")
        try await holder.release(grant)
        holder.disconnect()
        var seen: [Event] = []
        for await event in events { seen.append(event) }
        XCTAssertEqual(seen, [], "no lockSuspended: the sidecar kept its ZooKeeper connection")
    }

    func testErrorsMapToTheirCodes() async throws {
        let client = try await connect()
        try await client.create("/e", data: [0])
        try await client.create("/e/child")
        func expect(_ code: ErrorCode, _ body: () async throws(BatonError) -> Void) async {
            do {
                try await body()
                XCTFail("expected \(code)")
            } catch {
                XCTAssertEqual(error.code, code, "\(error)")
            }
        }
        await expect(.nodeExists) { () async throws(BatonError) in try await client.create("/e") }
        await expect(.noNode) { () async throws(BatonError) in try await client.delete("/nothing") }
        await expect(.noNode) { () async throws(BatonError) in _ = try await client.get("/nothing") }
        await expect(.noNode) { () async throws(BatonError) in try await client.create("/nothing/child") }
        await expect(.badVersion) { () async throws(BatonError) in try await client.set("/e", data: [1], version: 7) }
        await expect(.notEmpty) { () async throws(BatonError) in try await client.delete("/e") }
        await expect(.invalidPath) { () async throws(BatonError) in try await client.create("no-slash") }
        let other = try await connect("holder")
        await expect(.lockBusy) { () async throws(BatonError) in
            _ = try await other.acquire("/locks/busy")
            _ = try await client.tryAcquire("/locks/busy")
        }
    }

    func testPipelinedConcurrentCallsAreMatched() async throws {
        let client = try await connect()
        try await client.create("/p")
        let count = 200
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<count {
                group.addTask { try await client.create("/p/n\(index)", data: Array("value \(index)".utf8)) }
            }
            try await group.waitForAll()
        }
        try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
            for index in 0..<count {
                group.addTask { (index, try await client.get("/p/n\(index)").data) }
            }
            for try await (index, data) in group {
                XCTAssertEqual(String(decoding: data, as: UTF8.self), "value \(index)")
            }
        }
        let children = try await client.children("/p")
        XCTAssertEqual(children.count, count)
    }

    func testWatchCallbacksAndEventsStream() async throws {
        let watcher = try await connect("watcher")
        let writer = try await connect("writer")
        let events = watcher.events()
        let created = expectation(description: "created")
        let changed = expectation(description: "dataChanged")
        let children = expectation(description: "childrenChanged")
        let absent = try await watcher.exists("/w", watcher: { event in
            XCTAssertEqual(event, WatchEvent(type: .created, path: "/w"))
            created.fulfill()
        })
        XCTAssertNil(absent)
        try await writer.create("/w", data: [1])
        await fulfillment(of: [created], timeout: 20)

        _ = try await watcher.get("/w", watcher: { event in
            XCTAssertEqual(event, WatchEvent(type: .dataChanged, path: "/w"))
            changed.fulfill()
        })
        _ = try await watcher.children("/w", watcher: { event in
            XCTAssertEqual(event, WatchEvent(type: .childrenChanged, path: "/w"))
            children.fulfill()
        })
        try await writer.set("/w", data: [2])
        try await writer.create("/w/c")
        await fulfillment(of: [changed, children], timeout: 20)

        var streamed: [Event] = []
        for await event in events {
            streamed.append(event)
            if streamed.count == 3 { break }
        }
        XCTAssertEqual(streamed, [.watch(type: .created, path: "/w"), .watch(type: .dataChanged, path: "/w"),
                                  .watch(type: .childrenChanged, path: "/w")])
    }

    func testHeartbeatsKeepAShortSessionAlivePastItsTimeout() async throws {
        let client = try await connect("beating", timeout: .milliseconds(300))
        XCTAssertLessThanOrEqual(client.session.timeoutMilliseconds, 1_000)
        let node = try await client.create("/alive", mode: .ephemeral)
        // Idle for many timeouts: only heartbeats keep the session.
        try await Task.sleep(for: .milliseconds(Int64(client.session.timeoutMilliseconds) * 6))
        XCTAssertGreaterThan(client.heartbeatsSent, 0)
        let observer = try await connect("observer")
        let stillThere = try await observer.exists(node)
        XCTAssertNotNil(stillThere)
        try await client.ping()
    }

    func testWithoutHeartbeatsAShortSessionExpires() async throws {
        let client = try await connect("silent", timeout: .milliseconds(300), heartbeats: false)
        let node = try await client.create("/silent", mode: .ephemeral)
        let observer = try await connect("observer")
        // The session must expire and take its ephemeral node: poll until it does (no time bound asserted).
        var gone = false
        for _ in 0..<400 where !gone {
            try await Task.sleep(for: .milliseconds(50))
            gone = try await observer.exists(node) == nil
        }
        XCTAssertTrue(gone, "the ephemeral node of a silent session outlived it")
    }

    func testResumeOverTCPKeepsTheSessionAndItsEphemerals() async throws {
        let endpoint = try XCTUnwrap(daemon.tcpEndpoint)
        let first = try await BatonClient.connect(to: endpoint, options: daemon.tcpOptions(
            ClientOptions(clientName: "tcp", sessionTimeout: .seconds(10))))
        let node = try await first.create("/resumable", mode: .ephemeral)
        let session = first.session
        first.disconnect()
        let resumed = try await BatonClient.resume(to: endpoint, sessionID: session.id, secret: session.secret,
                                                     options: daemon.tcpOptions())
        XCTAssertEqual(resumed.session.id, session.id)
        let owner = try await resumed.exists(node)?.ephemeralOwner
        XCTAssertEqual(owner, session.id)
        try await resumed.closeSession()

        do {
            _ = try await BatonClient.resume(to: endpoint, sessionID: session.id, secret: session.secret,
                                                     options: daemon.tcpOptions())
            XCTFail("resumed a closed session")
        } catch {
            XCTAssertNotNil(error.code)
        }
    }

    func testTCPWithoutTheTokenCannotOpenASession() async throws {
        let endpoint = try XCTUnwrap(daemon.tcpEndpoint)
        do {
            _ = try await BatonClient.connect(to: endpoint)
            XCTFail("opened a TCP session without the token")
        } catch {
            XCTAssertEqual(error.code, .notAuthorized)
        }
        var wrong = daemon.tcpOptions()
        wrong.tcpAuthenticationToken = Array("not-the-token-at-all".utf8)
        do {
            _ = try await BatonClient.connect(to: endpoint, options: wrong)
            XCTFail("opened a TCP session with a wrong token")
        } catch {
            XCTAssertEqual(error.code, .notAuthorized)
        }
    }

    func testResumeOverTCPWithTheWrongSecretIsRefused() async throws {
        let endpoint = try XCTUnwrap(daemon.tcpEndpoint)
        let first = try await BatonClient.connect(to: endpoint, options: daemon.tcpOptions())
        let session = first.session
        first.disconnect()
        do {
            _ = try await BatonClient.resume(to: endpoint, sessionID: session.id,
                                             secret: SessionSecret(high: session.secret.high, low: session.secret.low ^ 1),
                                             options: daemon.tcpOptions())
            XCTFail("resumed with a wrong secret")
        } catch {
            XCTAssertEqual(error.code, .sessionSecretMismatch)
        }
    }

    func testLocksGrantInOrderWithIncreasingTokens() async throws {
        let first = try await connect("first")
        let second = try await connect("second")
        let held = try await first.acquire("/locks/a")
        let waiting = Task { try await second.acquire("/locks/a") }
        try await waitUntil { try await first.inspect("/locks/a").count == 2 }
        let entries = try await first.inspect("/locks/a")
        XCTAssertEqual(entries.map(\.position), [.holder, .waiter])
        XCTAssertEqual(entries.map(\.clientName), ["first", "second"])
        let currentWhileHeld = try await first.checkToken("/locks/a", token: held.token)
        XCTAssertTrue(currentWhileHeld)
        try await first.release(held)
        let next = try await waiting.value
        XCTAssertGreaterThan(next.token, held.token)
        let currentAfterRelease = try await first.checkToken("/locks/a", token: held.token)
        XCTAssertFalse(currentAfterRelease)
        try await second.release(next)
    }

    func testWithLockReleasesWhenTheBodyThrows() async throws {
        struct BodyFailed: Error {}
        let client = try await connect()
        do {
            try await client.withLock("/locks/w") { _ in throw BodyFailed() }
            XCTFail("the body's error was swallowed")
        } catch is BodyFailed {}
        let other = try await connect("other")
        let grant = try await other.tryAcquire("/locks/w")
        try await other.release(grant)
    }

    func testCancellingAWaitingAcquireWithdrawsTheWaiter() async throws {
        let holder = try await connect("holder")
        let waiter = try await connect("waiter")
        let grant = try await holder.acquire("/locks/c")
        let task = Task { try await waiter.acquire("/locks/c") }
        try await waitUntil { try await holder.inspect("/locks/c").count == 2 }
        task.cancel()
        do {
            _ = try await task.value
            XCTFail("a cancelled acquire succeeded")
        } catch let error as BatonError {
            XCTAssertEqual(error, .cancelled)
        }
        try await waitUntil { try await holder.inspect("/locks/c").count == 1 }
        let remaining = try await holder.inspect("/locks/c")
        XCTAssertEqual(remaining.first?.node, grant.node)
        try await holder.release(grant)
    }

    func testAcquireTimesOut() async throws {
        let holder = try await connect("holder")
        let waiter = try await connect("waiter")
        _ = try await holder.acquire("/locks/t")
        do {
            _ = try await waiter.acquire("/locks/t", timeout: .milliseconds(100))
            XCTFail("acquired a held lock")
        } catch {
            XCTAssertEqual(error.code, .lockTimeout)
        }
    }

    func testLeaseExpiryIsReportedAsLockLost() async throws {
        let client = try await connect()
        let lost = expectation(description: "lock lost")
        let grantNode = MutexLock<String?>(nil)
        client.onLockLost { event in
            XCTAssertEqual(event.reason, .leaseExpired)
            XCTAssertEqual(event.node, grantNode.withLock { $0 })
            lost.fulfill()
        }
        let grant = try await client.acquire("/locks/lease", lease: .milliseconds(200))
        grantNode.withLock { $0 = grant.node }
        await fulfillment(of: [lost], timeout: 20)
    }

    func testReentrantAcquireRenewAndDeadlockAgainstTheDaemon() async throws {
        let first = try await connect("first")
        let second = try await connect("second")
        // Reentrancy: the same owner gets the same hold, counted; another owner of the session waits.
        let held = try await first.acquire("/locks/re", lease: .seconds(30), owner: "thread-1")
        let again = try await first.acquire("/locks/re", owner: "thread-1")
        XCTAssertEqual([held.holdCount, again.holdCount], [1, 2])
        XCTAssertEqual(again.node, held.node)
        XCTAssertEqual(again.token, held.token)
        let plain = try await first.acquire("/locks/plain")
        do {
            _ = try await first.acquire("/locks/plain", timeout: .seconds(20))
            XCTFail("an exclusive re-acquire without an owner waited for itself")
        } catch {
            XCTAssertEqual(error.code, .lockHeldBySession)
        }
        try await first.release(plain)
        try await first.renew(held, lease: .seconds(30))
        try await first.release(again)
        let stillCurrent = try await second.checkToken("/locks/re", token: held.token)
        XCTAssertTrue(stillCurrent, "one count left")
        try await first.release(held)
        let afterLast = try await second.checkToken("/locks/re", token: held.token)
        XCTAssertFalse(afterLast)
        do {
            try await first.renew(held, lease: .seconds(1))
            XCTFail("renewed an ended hold")
        } catch {
            // The embedded store sees the node is gone; a ZooKeeper sidecar does not read ZooKeeper to
            // tell an ended hold from one it never had (PROTOCOL.md §16).
            XCTAssertEqual(error.code, daemon.isZooKeeper ? .notHolder : .lockLost)
        }

        // Deadlock: opposite order; the acquire that closes the cycle fails at once.
        let one = try await first.acquire("/locks/one")
        let two = try await second.acquire("/locks/two")
        let waiting = Task { try await first.acquire("/locks/two") }
        try await waitUntil { try await second.inspect("/locks/two").count == 2 }
        do {
            _ = try await second.acquire("/locks/one")
            XCTFail("a crossed acquire waited")
        } catch {
            XCTAssertEqual(error.code, .deadlock)
            XCTAssertTrue("\(error)".contains("/locks/two"), "\(error)")
        }
        try await second.release(two)
        let granted = try await waiting.value
        try await first.release(granted)
        try await first.release(one)
    }

    func testARevocationRequestReachesTheRevocableHolderWhoReleases() async throws {
        let holder = try await connect("holder")
        let asker = try await connect("asker")
        let requests = holder.revocationRequests()
        let grant = try await holder.acquire("/locks/rv", owner: "job", revocable: true)
        // The holder gives the lock up when asked.
        let gaveUp = Task { () async throws -> RevocationRequest? in
            for await request in requests where request.node == grant.node {
                try await holder.release(grant)
                return request
            }
            return nil
        }
        let waiting = Task { try await asker.acquire("/locks/rv") }
        try await waitUntil { try await asker.inspect("/locks/rv").count == 2 }
        let asked = try await asker.requestRevocation("/locks/rv")
        XCTAssertEqual(asked, 1)
        let next = try await waiting.value
        let request = try await gaveUp.value
        XCTAssertEqual(request?.token, grant.token)
        XCTAssertEqual(request?.requester, asker.session.id)
        let nobody = try await holder.requestRevocation("/locks/rv")
        XCTAssertEqual(nobody, 0, "a hold acquired without the flag is never asked")
        try await asker.release(next)
        // A lock path nobody ever used: the embedded store knows it does not exist; a ZooKeeper
        // sidecar answers from the holds it manages, without reading ZooKeeper (PROTOCOL.md §16).
        do {
            let unknown = try await asker.requestRevocation("/locks/never")
            XCTAssertTrue(daemon.isZooKeeper, "the embedded store answered \(unknown) for a missing path")
            XCTAssertEqual(unknown, 0)
        } catch {
            XCTAssertFalse(daemon.isZooKeeper, "\(error)")
            XCTAssertEqual(error.code, .noNode)
        }
    }

    func testSharedLocksAreHeldTogether() async throws {
        let readers = [try await connect("r1"), try await connect("r2")]
        let first = try await readers[0].acquire("/locks/rw", kind: .shared)
        let second = try await readers[1].tryAcquire("/locks/rw", kind: .shared)
        let entries = try await readers[0].inspect("/locks/rw")
        XCTAssertEqual(entries.filter { $0.position == .holder }.count, 2)
        try await readers[0].release(first)
        try await readers[1].release(second)
    }

    func testBlockingClientRoundTrip() throws {
        let client = try BlockingClient.connect(to: daemon.endpoint, options: ClientOptions(clientName: "blocking"))
        try client.create("/b", data: Array("x".utf8))
        XCTAssertEqual(try client.get("/b").data, Array("x".utf8))
        let token = try client.withLock("/locks/b") { grant in
            XCTAssertTrue((try? client.checkToken("/locks/b", token: grant.token)) ?? false)
            return grant.token
        }
        XCTAssertFalse(try client.checkToken("/locks/b", token: token), "withLock released")
        try client.closeSession()
    }

    /// Polls `condition` until it holds (at most 20 s; the bound is a hang guard, not a timing assertion).
    func waitUntil(_ condition: () async throws -> Bool, file: StaticString = #filePath, line: UInt = #line) async throws {
        for _ in 0..<2_000 {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        XCTFail("condition never held", file: file, line: line)
    }
}

/// The same tests on a sidecar over ZooKeeper: one standalone ZooKeeper server for the class (the
/// suite checks the store's behaviour, not the ensemble's; multi-member cases are in
/// BatonZooKeeperTests), a sidecar per test under its own chroot.
final class ClientIntegrationZooKeeperTests: ClientIntegrationTests {
    static let shared = SharedEnsemble(members: 1)
    override class var store: DaemonStore { .zooKeeper(shared) }

    override class func tearDown() {
        shared.stop()
        super.tearDown()
    }

    // Linux test discovery finds a subclass by the tests it declares (then runs the inherited ones
    // too): this one's own test keeps the class, and so the whole suite, on this store.
    func testHelloNamesTheZooKeeperStore() async throws {
        let client = try await connect()
        XCTAssertTrue(client.serverName.contains(" store=zookeeper://"), client.serverName)
    }
}
