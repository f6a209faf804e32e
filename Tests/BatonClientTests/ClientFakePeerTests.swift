import XCTest
import Foundation
import BatonProtocol
@testable import BatonClient

/// The client against a scripted peer on a socketpair: wire encoding, matching, events, heartbeats,
/// cancellation and failure paths, with no daemon.
final class ClientFakePeerTests: XCTestCase {
    func testHandshakeSendsHelloThenOpenSessionWithRequestedTimeoutAndFlags() async throws {
        let peer = FakePeer()
        let client = try await peer.client(options: ClientOptions(clientName: "unit", sessionTimeout: .milliseconds(1_500),
                                                                  keepOnDisconnect: true, heartbeats: false))
        let requests = peer.requests.map(\.request)
        XCTAssertEqual(requests.first, .hello(version: ProtocolVersion.current, clientName: "unit"))
        XCTAssertEqual(requests.dropFirst().first, .openSession(timeoutMilliseconds: 1_500, flags: [.keepOnDisconnect, .resumedEvents]))
        XCTAssertEqual(client.session, SessionInfo(id: 42, secret: SessionSecret(high: 1, low: 2), timeoutMilliseconds: 1_500))
        XCTAssertEqual(client.serverName, "fake")
    }

    /// `children` gathers every page: it asks again after the last name while the server says `more`.
    func testChildrenFollowsPagesUntilTheServerHasNoMore() async throws {
        let all = (0..<7).map { "c\($0)" }
        let peer = FakePeer { peer, id, request in
            guard case .children(_, let watch, let after, _) = request else { return peer.fail(id, request.opcode, .invalidArgument) }
            let start = after.isEmpty ? 0 : all.firstIndex(of: after)! + 1
            let page = Array(all[start..<min(start + 3, all.count)])
            // Only the first page sets the watch.
            if watch != after.isEmpty { return peer.fail(id, .children, .invalidArgument) }
            peer.reply(id, .children, .children(stat: .sample(version: 0), names: page, more: start + 3 < all.count))
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let names = try await client.children("/d", watch: true)
        XCTAssertEqual(names, all)
        let page = try await client.childrenPage("/d", after: "c2")
        XCTAssertEqual(page.names, ["c3", "c4", "c5"])
        XCTAssertTrue(page.more)
    }

    func testEveryOperationEncodesItsRequestAndDecodesItsReply() async throws {
        let peer = FakePeer { peer, id, request in
            switch request {
            case .ping: peer.reply(id, .ping, .empty)
            case .create(let path, _, let mode):
                peer.reply(id, .create, .created(path: path + (mode.sequential ? "0000000003" : ""), stat: .sample(version: 0)))
            case .delete: peer.reply(id, .delete, .empty)
            case .exists(let path, _): peer.reply(id, .exists, .exists(path == "/present" ? .sample(version: 4) : nil))
            case .get: peer.reply(id, .get, .data(stat: .sample(version: 5), data: [1, 2, 3]))
            case .set(_, _, let version): peer.reply(id, .set, .stat(.sample(version: version + 1)))
            case .children: peer.reply(id, .children, .children(stat: .sample(version: 0), names: ["b", "a"]))
            case .multi(let operations):
                peer.reply(id, .multi, .multi(operations.map { _ in .checked }))
            case .acquire(let lock): peer.reply(id, .acquire, .granted(node: lock.path + "/lock-0000000001", token: 9))
            case .release: peer.reply(id, .release, .empty)
            case .checkToken(_, let token): peer.reply(id, .checkToken, .tokenStatus(current: token == 9))
            case .inspect:
                peer.reply(id, .inspect, .lockEntries([LockEntry(node: "/l/n", kind: .shared, position: .holder, sessionID: 42,
                                                                 clientName: "c", token: 9, ageMilliseconds: 5)]))
            case .closeSession: peer.reply(id, .closeSession, .empty)
            default: peer.fail(id, request.opcode, .invalidArgument)
            }
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        try await client.ping()
        let sequential = try await client.create("/a/n-", data: Array("x".utf8), mode: .persistentSequential)
        XCTAssertEqual(sequential, "/a/n-0000000003")
        try await client.delete("/a", version: 3)
        let present = try await client.exists("/present")
        XCTAssertEqual(present?.version, 4)
        let absent = try await client.exists("/absent")
        XCTAssertNil(absent)
        let (data, stat) = try await client.get("/a")
        XCTAssertEqual(data, [1, 2, 3])
        XCTAssertEqual(stat.version, 5)
        let newStat = try await client.set("/a", data: [9], version: 5)
        XCTAssertEqual(newStat.version, 6)
        let names = try await client.children("/a")
        XCTAssertEqual(names, ["b", "a"])
        let results = try await client.multi([.check(path: "/a", expectedVersion: 1), .delete(path: "/b", expectedVersion: -1)])
        XCTAssertEqual(results, [.checked, .checked])
        let grant = try await client.acquire("/l", kind: .semaphore, permits: 3, timeout: .milliseconds(1_500),
                                             lease: .seconds(2))
        XCTAssertEqual(grant, LockGrant(path: "/l", node: "/l/lock-0000000001", token: 9, kind: .semaphore))
        let current = try await client.checkToken("/l", token: 9)
        XCTAssertTrue(current)
        let entries = try await client.inspect("/l")
        XCTAssertEqual(entries.map(\.token), [9])
        try await client.release(grant)
        try await client.closeSession()

        let sent = peer.requests.map(\.request)
        XCTAssertTrue(sent.contains(.create(path: "/a/n-", data: Array("x".utf8), mode: .persistentSequential)))
        XCTAssertTrue(sent.contains(.delete(path: "/a", expectedVersion: 3)))
        XCTAssertTrue(sent.contains(.set(path: "/a", data: [9], expectedVersion: 5)))
        XCTAssertTrue(sent.contains(.acquire(LockRequest(path: "/l", kind: .semaphore, permits: 3, waitMilliseconds: 1_500,
                                                         leaseMilliseconds: 2_000))))
        XCTAssertTrue(sent.contains(.release(node: "/l/lock-0000000001", token: 9)))
        XCTAssertEqual(sent.last, .closeSession)
        XCTAssertTrue(client.isClosed)
    }

    func testTryAcquireSendsZeroWaitAndMapsBusy() async throws {
        let peer = FakePeer { peer, id, request in
            if case .acquire = request { peer.fail(id, .acquire, .lockBusy, "held") }
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        do {
            _ = try await client.tryAcquire("/l")
            XCTFail("expected lockBusy")
        } catch {
            XCTAssertEqual(error.code, .lockBusy)
            XCTAssertEqual(error, .server(ReplyError(.lockBusy, "held")))
        }
        XCTAssertTrue(peer.requests.map(\.request).contains(.acquire(LockRequest(path: "/l", waitMilliseconds: 0))))
    }

    func testPipelinedRepliesInReverseOrderReachTheirOwnCallers() async throws {
        let count = 32
        let peer = FakePeer()
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        // Hold every get until all have arrived, then answer newest first: matching must be by id.
        peer.setResponder { peer, _, _ in
            let gets = peer.requests.filter { if case .get = $0.request { true } else { false } }
            guard gets.count == count else { return }
            for (id, request) in gets.reversed() {
                guard case .get(let path, _) = request else { continue }
                peer.reply(id, .get, .data(stat: Stat(), data: Array(path.utf8)))
            }
        }
        try await withThrowingTaskGroup(of: (String, [UInt8]).self) { group in
            for index in 0..<count {
                group.addTask {
                    let path = "/node-\(index)"
                    return (path, try await client.get(path).data)
                }
            }
            var seen = 0
            for try await (path, data) in group {
                XCTAssertEqual(String(decoding: data, as: UTF8.self), path)
                seen += 1
            }
            XCTAssertEqual(seen, count)
        }
        let ids = peer.requests.filter { if case .get = $0.request { true } else { false } }.map(\.requestID)
        XCTAssertEqual(Set(ids).count, count, "every pipelined request has its own id")
    }

    func testWatchCallbackFiresOnceAndEventsStreamSeesEveryEventInOrder() async throws {
        let peer = FakePeer { peer, id, request in
            switch request {
            case .exists: peer.reply(id, .exists, .exists(.sample(version: 0)))
            case .children: peer.reply(id, .children, .children(stat: Stat(), names: []))
            default: break
            }
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let events = client.events()
        let dataFired = expectation(description: "data watch fired")
        let childFired = expectation(description: "child watch fired")
        let recorded = MutexLock<[String]>([])
        _ = try await client.exists("/w", watcher: { event in
            recorded.withLock { $0.append("data \(event)") }
            dataFired.fulfill()
        })
        _ = try await client.children("/w", watcher: { event in
            recorded.withLock { $0.append("children \(event)") }
            childFired.fulfill()
        })
        // A children change fires only the child watch; a data change only the data watch; the second
        // data change finds no watch left (one-shot) but still reaches the stream.
        peer.send(.event(.watch(type: .childrenChanged, path: "/w")))
        peer.send(.event(.watch(type: .dataChanged, path: "/w")))
        peer.send(.event(.watch(type: .dataChanged, path: "/w")))
        peer.send(.event(.watch(type: .dataChanged, path: "/other")))
        await fulfillment(of: [childFired, dataFired], timeout: 20, enforceOrder: true)

        var streamed: [Event] = []
        for await event in events {
            streamed.append(event)
            if streamed.count == 4 { break }
        }
        XCTAssertEqual(streamed, [.watch(type: .childrenChanged, path: "/w"), .watch(type: .dataChanged, path: "/w"),
                                  .watch(type: .dataChanged, path: "/w"), .watch(type: .dataChanged, path: "/other")])
        // Let the event queue drain, then make sure no callback ran twice.
        await withCheckedContinuation { continuation in client.connection.eventQueue.async { continuation.resume() } }
        XCTAssertEqual(recorded.withLock { $0 }, ["children childrenChanged /w", "data dataChanged /w"])
    }

    func testDeletionFiresBothDataAndChildWatches() async throws {
        let peer = FakePeer { peer, id, request in
            switch request {
            case .get: peer.reply(id, .get, .data(stat: Stat(), data: []))
            case .children: peer.reply(id, .children, .children(stat: Stat(), names: []))
            default: break
            }
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let both = expectation(description: "both watches")
        both.expectedFulfillmentCount = 2
        _ = try await client.get("/d", watcher: { event in
            XCTAssertEqual(event, WatchEvent(type: .deleted, path: "/d"))
            both.fulfill()
        })
        _ = try await client.children("/d", watcher: { event in
            XCTAssertEqual(event, WatchEvent(type: .deleted, path: "/d"))
            both.fulfill()
        })
        peer.send(.event(.watch(type: .deleted, path: "/d")))
        await fulfillment(of: [both], timeout: 20)
    }

    func testFailedReplyDoesNotRegisterItsWatch() async throws {
        let peer = FakePeer { peer, id, request in
            if case .get = request { peer.fail(id, .get, .noNode) }
            if case .ping = request { peer.reply(id, .ping, .empty) }
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let fired = MutexLock(false)
        do {
            _ = try await client.get("/missing", watcher: { _ in fired.withLock { $0 = true } })
            XCTFail("expected noNode")
        } catch {
            XCTAssertEqual(error.code, .noNode)
        }
        let events = client.events()
        peer.send(.event(.watch(type: .created, path: "/missing")))
        for await _ in events { break }
        await withCheckedContinuation { continuation in client.connection.eventQueue.async { continuation.resume() } }
        XCTAssertFalse(fired.withLock { $0 })
    }

    func testHeartbeatsPingWhileIdle() async throws {
        let peer = FakePeer { peer, id, request in
            if case .ping = request { peer.reply(id, .ping, .empty) }
        }
        // 300 ms session: pings every ~100 ms while nothing else is sent.
        let client = try await peer.client(options: ClientOptions(sessionTimeout: .milliseconds(300)))
        XCTAssertTrue(peer.waitFor { requests in requests.filter { $0.request == .ping }.count >= 3 })
        XCTAssertGreaterThanOrEqual(client.heartbeatsSent, 3)
        XCTAssertFalse(client.isClosed)
    }

    func testNoHeartbeatsWhenDisabled() async throws {
        let peer = FakePeer { peer, id, request in
            if case .exists = request { peer.reply(id, .exists, .exists(nil)) }
        }
        let client = try await peer.client(options: ClientOptions(sessionTimeout: .milliseconds(200), heartbeats: false))
        // Give a heartbeat every chance to happen (several intervals), measured by round trips, not clocks.
        for _ in 0..<5 {
            try await Task.sleep(for: .milliseconds(100))
            _ = try await client.exists("/x")
        }
        XCTAssertEqual(client.heartbeatsSent, 0)
        XCTAssertFalse(peer.requests.contains { $0.request == .ping })
    }

    func testCancellingAWaitingAcquireSendsCancelForItsRequestID() async throws {
        let peer = FakePeer { peer, id, request in
            if case .cancel(let acquireID) = request {
                peer.fail(acquireID, .acquire, .lockCancelled)
                peer.reply(id, .cancel, .empty)
            }
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let task = Task { try await client.acquire("/busy") }
        XCTAssertTrue(peer.waitFor { $0.contains { if case .acquire = $0.request { true } else { false } } })
        task.cancel()
        do {
            _ = try await task.value
            XCTFail("expected cancellation")
        } catch let error as BatonError {
            XCTAssertEqual(error, .cancelled)
        }
        let acquireID = peer.requests.first { if case .acquire = $0.request { true } else { false } }!.requestID
        XCTAssertTrue(peer.requests.contains { $0.request == .cancel(acquireRequestID: acquireID) })
    }

    func testGrantRacingCancellationIsReleasedNotReturned() async throws {
        // The server granted before it saw the cancel: the grant arrives, the cancel fails.
        let peer = FakePeer { peer, id, request in
            switch request {
            case .cancel(let acquireID):
                peer.reply(acquireID, .acquire, .granted(node: "/l/lock-0000000007", token: 7))
                peer.fail(id, .cancel, .invalidArgument, "no such acquire")
            case .release: peer.reply(id, .release, .empty)
            default: break
            }
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let task = Task { try await client.acquire("/l") }
        XCTAssertTrue(peer.waitFor { $0.contains { if case .acquire = $0.request { true } else { false } } })
        task.cancel()
        do {
            let grant = try await task.value
            XCTFail("a cancelled acquire returned \(grant)")
        } catch let error as BatonError {
            XCTAssertEqual(error, .cancelled)
        }
        XCTAssertTrue(peer.waitFor { $0.contains { $0.request == .release(node: "/l/lock-0000000007", token: 7) } })
    }

    func testAcquireInAnAlreadyCancelledTaskSendsNothing() async throws {
        let peer = FakePeer()
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await client.acquire("/l")
        }
        do {
            _ = try await task.value
            XCTFail("expected cancellation")
        } catch let error as BatonError {
            XCTAssertEqual(error, .cancelled)
        }
        XCTAssertFalse(peer.requests.contains { if case .acquire = $0.request { true } else { false } })
    }

    func testWithLockReleasesWhenTheBodyThrows() async throws {
        struct BodyFailed: Error {}
        let peer = FakePeer { peer, id, request in
            switch request {
            case .acquire(let lock): peer.reply(id, .acquire, .granted(node: lock.path + "/lock-0000000000", token: 1))
            case .release: peer.reply(id, .release, .empty)
            default: break
            }
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        do {
            try await client.withLock("/l") { grant in
                XCTAssertEqual(grant.token, 1)
                throw BodyFailed()
            }
            XCTFail("expected the body's error")
        } catch is BodyFailed {}
        XCTAssertTrue(peer.requests.contains { $0.request == .release(node: "/l/lock-0000000000", token: 1) })

        let value = try await client.withLock("/m") { grant in grant.node }
        XCTAssertEqual(value, "/m/lock-0000000000")
        XCTAssertTrue(peer.requests.contains { $0.request == .release(node: "/m/lock-0000000000", token: 1) })
    }

    func testServerErrorsMapToTheirCodes() async throws {
        let codes: [ErrorCode] = [.noNode, .nodeExists, .badVersion, .notEmpty, .invalidPath, .lockTimeout, .notHolder]
        let peer = FakePeer { peer, id, request in
            if case .delete(let path, _) = request {
                let code = codes[Int(path.dropFirst())!]
                peer.fail(id, .delete, code, "detail")
            }
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        for (index, code) in codes.enumerated() {
            do {
                try await client.delete("/\(index)")
                XCTFail("expected \(code)")
            } catch {
                XCTAssertEqual(error, .server(ReplyError(code, "detail")))
                XCTAssertEqual(error.code, code)
            }
        }
    }

    func testConnectionLossFailsPendingRequestsFinishesStreamsAndCallsCloseHandlers() async throws {
        let peer = FakePeer()
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let events = client.events()
        let closed = expectation(description: "close handler")
        client.onClose { error in
            XCTAssertEqual(error, .connectionClosed)
            closed.fulfill()
        }
        let pending = Task { try await client.get("/never-answered") }
        XCTAssertTrue(peer.waitFor { $0.contains { if case .get = $0.request { true } else { false } } })
        peer.close()
        do {
            _ = try await pending.value
            XCTFail("expected connectionClosed")
        } catch let error as BatonError {
            XCTAssertEqual(error, .connectionClosed)
        }
        for await _ in events { XCTFail("no events expected") }
        await fulfillment(of: [closed], timeout: 20)
        XCTAssertTrue(client.isClosed)
        do {
            try await client.ping()
            XCTFail("a closed client answered")
        } catch {
            XCTAssertEqual(error, .connectionClosed)
        }
    }

    func testUndecodableFrameIsAProtocolViolation() async throws {
        let peer = FakePeer()
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let pending = Task { try await client.ping() }
        XCTAssertTrue(peer.waitFor { $0.contains { $0.request == .ping } })
        peer.sendRaw([0, 0, 0, 2, 0x09, 0x00])  // frame kind 9 does not exist
        do {
            try await pending.value
            XCTFail("expected a protocol violation")
        } catch let error as BatonError {
            guard case .protocolViolation = error else { return XCTFail("got \(error)") }
        }
        XCTAssertTrue(client.isClosed)
    }

    func testReplyWithTheWrongOpcodeIsAProtocolViolation() async throws {
        let peer = FakePeer { peer, id, request in
            if case .ping = request { peer.reply(id, .get, .data(stat: Stat(), data: [])) }
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        do {
            try await client.ping()
            XCTFail("expected a protocol violation")
        } catch {
            guard case .protocolViolation = error else { return XCTFail("got \(error)") }
        }
    }

    func testUnattributedClosingErrorFailsPendingRequestsWithIt() async throws {
        let peer = FakePeer()
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let pending = Task { try await client.exists("/x") }
        XCTAssertTrue(peer.waitFor { $0.contains { if case .exists = $0.request { true } else { false } } })
        peer.fail(0, .hello, .shuttingDown, "daemon stopping")
        peer.close()
        do {
            _ = try await pending.value
            XCTFail("expected shuttingDown")
        } catch let error as BatonError {
            XCTAssertEqual(error.code, .shuttingDown)
        }
    }

    func testRequestOverTheServersFrameLimitFailsWithoutBeingSent() async throws {
        let peer = FakePeer { peer, id, request in
            if case .create(let path, _, _) = request { peer.reply(id, .create, .created(path: path, stat: Stat())) }
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        do {
            // The fake's hello allows 1 MiB bodies.
            try await client.create("/big", data: [UInt8](repeating: 0, count: 1 << 20))
            XCTFail("an oversized request was accepted")
        } catch {
            guard case .invalidArgument = error else { return XCTFail("got \(error)") }
        }
        let small = try await client.create("/small", data: [UInt8](repeating: 0, count: 1_000))
        XCTAssertEqual(small, "/small")
        XCTAssertFalse(peer.requests.contains { if case .create("/big", _, _) = $0.request { true } else { false } })
    }

    func testRequestTimeoutFailsAnUnansweredRequest() async throws {
        let peer = FakePeer()
        let client = try await peer.client(options: ClientOptions(requestTimeout: .milliseconds(50), heartbeats: false))
        do {
            _ = try await client.exists("/silence")
            XCTFail("expected timedOut")
        } catch {
            XCTAssertEqual(error, .timedOut)
        }
        XCTAssertFalse(client.isClosed, "a timed-out request leaves the connection usable")
    }

    func testLockLostHandlerAndStream() async throws {
        let peer = FakePeer()
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let handled = expectation(description: "lock-lost handler")
        client.onLockLost { lost in
            XCTAssertEqual(lost, LockLost(node: "/l/lock-0000000001", token: 3, reason: .leaseExpired))
            handled.fulfill()
        }
        let stream = client.lockLostEvents()
        // The stream subscribes from a task; send until it has seen one, so the test does not depend on timing.
        let sender = Task {
            while !Task.isCancelled {
                peer.send(.event(.lockLost(node: "/l/lock-0000000001", token: 3, reason: .leaseExpired)))
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        var first: LockLost?
        for await lost in stream {
            first = lost
            break
        }
        sender.cancel()
        XCTAssertEqual(first, LockLost(node: "/l/lock-0000000001", token: 3, reason: .leaseExpired))
        await fulfillment(of: [handled], timeout: 20)
    }

    func testBlockingClientUsesTheSameConnection() async throws {
        let peer = FakePeer { peer, id, request in
            switch request {
            case .get(let path, _): peer.reply(id, .get, .data(stat: .sample(version: 2), data: Array(path.utf8)))
            case .exists: peer.fail(id, .exists, .invalidPath)
            default: break
            }
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let blocking = client.blocking
        let result: Result<[UInt8], BatonError> = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(returning: Result { () throws(BatonError) in try blocking.get("/sync").data })
            }
        }
        XCTAssertEqual(try result.get(), Array("/sync".utf8))
        let failure: BatonError? = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                do throws(BatonError) {
                    _ = try blocking.exists("bad")
                    continuation.resume(returning: nil)
                } catch {
                    continuation.resume(returning: error)
                }
            }
        }
        XCTAssertEqual(failure?.code, .invalidPath)
    }

    func testLockArgumentsAreValidatedBeforeSending() async throws {
        let peer = FakePeer()
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        do {
            _ = try await client.acquire("/l", lease: .zero)
            XCTFail("a zero lease is not a lease")
        } catch {
            guard case .invalidArgument = error else { return XCTFail("got \(error)") }
        }
        do {
            _ = try await client.acquire("/l", timeout: .seconds(-1))
            XCTFail("negative timeout accepted")
        } catch {
            guard case .invalidArgument = error else { return XCTFail("got \(error)") }
        }
        XCTAssertFalse(peer.requests.contains { if case .acquire = $0.request { true } else { false } })
    }

    func testDurationsRoundUpToWholeMilliseconds() {
        XCTAssertEqual(Duration.zero.wireMilliseconds, 0)
        XCTAssertEqual(Duration.microseconds(1).wireMilliseconds, 1)
        XCTAssertEqual(Duration.milliseconds(1_500).wireMilliseconds, 1_500)
        XCTAssertEqual(Duration.seconds(-1).wireMilliseconds, nil)
        XCTAssertEqual(Duration.seconds(Int64(UInt32.max)).wireMilliseconds, nil)
    }

    func testDefaultEndpointFollowsTheDaemonsRule() {
        XCTAssertEqual(Endpoint.defaultEndpoint(environment: ["BATON_SOCKET": "/s"], userID: 5), .unix(path: "/s"))
        XCTAssertEqual(Endpoint.defaultEndpoint(environment: ["XDG_RUNTIME_DIR": "/run/user/5"], userID: 5),
                       .unix(path: "/run/user/5/baton.sock"))
        XCTAssertEqual(Endpoint.defaultEndpoint(environment: [:], userID: 5), .unix(path: "/tmp/baton-5.sock"))
    }

    func testConnectingToAMissingSocketFailsWithConnectFailed() async {
        do {
            _ = try await BatonClient.connect(to: .unix(path: "/nonexistent/baton-test.sock"))
            XCTFail("connected to nothing")
        } catch {
            guard case .connectFailed = error else { return XCTFail("got \(error)") }
        }
    }
}
