import XCTest
import Foundation
import Glibc
import BatonProtocol
@testable import BatonClient

/// Who reads the connection (ClientConnection's read turn): a caller reads its own reply on its own
/// thread when nobody else reads; otherwise the reader thread, or another caller, hands it over.
/// Every path must still deliver each reply to its own caller and every event, and end on close.
final class ClientReadTurnTests: XCTestCase {
    /// A peer that answers `get` with the path as data, after `delay` when one is given.
    static func echoingPeer(delay: Duration? = nil) -> FakePeer {
        FakePeer { peer, id, request in
            guard case .get(let path, _) = request else { return }
            guard let delay else { return peer.reply(id, .get, .data(stat: Stat(), data: Array(path.utf8))) }
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18)
                peer.reply(id, .get, .data(stat: Stat(), data: Array(path.utf8)))
            }
        }
    }

    func testACallerWithNobodyElseReadingReadsItsReplyOnItsOwnThread() async throws {
        let peer = Self.echoingPeer()
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let connection = client.connection
        let ranOnCaller: Bool = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let caller = pthread_self()
                let completedOn = MutexLock<pthread_t?>(nil)
                let requestID = connection.submit(.get(path: "/own", watch: false)) { _ in
                    completedOn.withLock { $0 = pthread_self() }
                }
                if let requestID { connection.readReply(to: requestID) }
                // readReply returns once the reply was read and its completion ran, here.
                let thread = completedOn.withLock { $0 }
                continuation.resume(returning: thread.map { pthread_equal($0, caller) != 0 } ?? false)
            }
        }
        XCTAssertTrue(ranOnCaller, "the reply was read and completed on the calling thread")
    }

    func testBlockingCallersOnManyThreadsAndAsyncTasksEachGetTheirOwnReply() async throws {
        let peer = Self.echoingPeer()
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let blocking = client.blocking
        let threads = 6, tasks = 6, calls = 150
        let mismatches = MutexLock<[String]>([])
        let finished = DispatchGroup()
        for thread in 0..<threads {
            finished.enter()
            Thread.detachNewThread {
                defer { finished.leave() }
                for call in 0..<calls {
                    let path = "/t\(thread)/\(call)"
                    do throws(BatonError) {
                        let data = try blocking.get(path).data
                        if data != Array(path.utf8) { mismatches.withLock { $0.append("\(path) got \(data)") } }
                    } catch {
                        mismatches.withLock { $0.append("\(path) failed: \(error)") }
                    }
                }
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<tasks {
                group.addTask {
                    for call in 0..<calls {
                        let path = "/a\(task)/\(call)"
                        let data = try await client.get(path).data
                        if data != Array(path.utf8) { mismatches.withLock { $0.append("\(path) got \(data)") } }
                    }
                }
            }
            try await group.waitForAll()
        }
        await withCheckedContinuation { continuation in
            finished.notify(queue: .global()) { continuation.resume() }
        }
        XCTAssertEqual(mismatches.withLock { $0 }, [])
        XCTAssertEqual(peer.requests.filter { if case .get = $0.request { true } else { false } }.count,
                       (threads + tasks) * calls)
    }

    func testAnAsyncReplyLaterThanTheReadBudgetStillArrives() async throws {
        // The caller gives the socket up after its budget and suspends; the reader thread reads on.
        let peer = Self.echoingPeer(delay: ClientConnection.asyncReadBudget * 20)
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let data = try await client.get("/late").data
        XCTAssertEqual(data, Array("/late".utf8))
    }

    func testEventsAreDeliveredWhileACallerReadsAndAfterCallsStop() async throws {
        let peer = FakePeer { peer, id, request in
            switch request {
            case .exists(let path, _):
                peer.reply(id, .exists, .exists(.sample(version: 0)))
                // An event right behind the reply: read by the caller reading its own reply.
                if path == "/behind" { peer.send(.event(.watch(type: .dataChanged, path: path))) }
            case .get(let path, _):
                peer.reply(id, .get, .data(stat: Stat(), data: Array(path.utf8)))
            default:
                break
            }
        }
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let blocking = client.blocking
        let firstFired = expectation(description: "watch fired by the event behind the reply")
        let idleFired = expectation(description: "watch fired with no call under way")
        let error: BatonError? = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                do throws(BatonError) {
                    _ = try blocking.exists("/behind", watcher: { _ in firstFired.fulfill() })
                    _ = try blocking.get("/after")
                    // A watch set by a reply this thread reads; its event comes when no call reads.
                    _ = try blocking.exists("/idle-watch", watch: false, watcher: { _ in idleFired.fulfill() })
                    continuation.resume(returning: nil)
                } catch {
                    continuation.resume(returning: error)
                }
            }
        }
        XCTAssertNil(error)
        await fulfillment(of: [firstFired], timeout: 20)
        // The reader thread takes the socket back once callers have stopped.
        try await Task.sleep(for: .milliseconds(20))
        let events = client.events()
        peer.send(.event(.watch(type: .deleted, path: "/idle-watch")))
        for await event in events {
            XCTAssertEqual(event, .watch(type: .deleted, path: "/idle-watch"))
            break
        }
        await fulfillment(of: [idleFired], timeout: 20)
    }

    func testDisconnectEndsABlockingCallReadingWithNoDeadline() async throws {
        let peer = FakePeer()  // never answers
        let client = try await peer.client(options: ClientOptions(requestTimeout: nil, heartbeats: false))
        let blocking = client.blocking
        let result: BatonError? = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                do throws(BatonError) {
                    _ = try blocking.get("/never")
                    continuation.resume(returning: nil)
                } catch {
                    continuation.resume(returning: error)
                }
            }
            Thread.detachNewThread {
                // Once the get is out, the caller is blocked reading the socket for it.
                peer.waitFor { $0.contains { if case .get = $0.request { true } else { false } } }
                Thread.sleep(forTimeInterval: 0.05)
                client.disconnect()
            }
        }
        XCTAssertEqual(result, .connectionClosed)
        XCTAssertTrue(client.isClosed)
    }

    func testABlockingCallerBoundedByItsRequestTimeoutGivesUpTheSocket() async throws {
        let peer = FakePeer { peer, id, request in
            guard case .get(let path, _) = request, path != "/silence" else { return }
            peer.reply(id, .get, .data(stat: Stat(), data: Array(path.utf8)))
        }
        let client = try await peer.client(options: ClientOptions(requestTimeout: .milliseconds(50), heartbeats: false))
        let blocking = client.blocking
        let outcome: (BatonError?, [UInt8]?) = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var timedOut: BatonError?
                do throws(BatonError) { _ = try blocking.get("/silence") } catch { timedOut = error }
                continuation.resume(returning: (timedOut, try? blocking.get("/next").data))
            }
        }
        XCTAssertEqual(outcome.0, .timedOut)
        XCTAssertEqual(outcome.1, Array("/next".utf8), "the connection reads on after a timed-out caller")
    }

    func testHeartbeatsGoOutWhileABlockingCallerReadsForALongWait() async throws {
        // The acquire is answered only after three pings: the reader thread keeps the timers while
        // the caller holds the socket, and the caller reads the pings' replies and its grant.
        let peer = FakePeer { peer, id, request in
            if case .ping = request { peer.reply(id, .ping, .empty) }
            let pings = peer.requests.filter { $0.request == .ping }.count
            if pings >= 3, let acquire = peer.requests.first(where: { if case .acquire = $0.request { true } else { false } }) {
                peer.reply(acquire.requestID, .acquire, .granted(node: "/l/lock-0000000001", token: 7))
            }
        }
        let client = try await peer.client(options: ClientOptions(sessionTimeout: .milliseconds(300)))
        let blocking = client.blocking
        let grant: Result<LockGrant, BatonError> = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(returning: Result { () throws(BatonError) in try blocking.acquire("/l") })
            }
        }
        XCTAssertEqual(try grant.get().token, 7)
        XCTAssertGreaterThanOrEqual(client.heartbeatsSent, 3)
    }

    func testADropWhileABlockingCallerReadsFailsItsCallAndTheSessionResumes() async throws {
        let listener = try FakeListener { descriptor in
            FakePeer(accepted: descriptor) { peer, id, request in
                if case .ping = request { peer.reply(id, .ping, .empty) } // get is never answered
            }
        }
        defer { listener.stop() }
        let client = try await BatonClient.connect(to: listener.endpoint, options: ClientOptions(
            clientName: "re", sessionTimeout: .seconds(5), heartbeats: false, reconnect: ClientReconnectFakePeerTests.fast))
        let blocking = client.blocking
        let first = try XCTUnwrap(listener.waitForPeer(1))
        let failure: BatonError? = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                do throws(BatonError) {
                    _ = try blocking.get("/a")
                    continuation.resume(returning: nil)
                } catch {
                    continuation.resume(returning: error)
                }
            }
            Thread.detachNewThread {
                // The get is out and its caller reads the socket for it (no request timeout).
                first.waitFor { $0.contains { if case .get = $0.request { true } else { false } } }
                first.close()
            }
        }
        XCTAssertEqual(failure, .connectionLost, "in flight at the drop: failed, never resent")
        XCTAssertNotNil(listener.waitForPeer(2))
        let pinged: BatonError? = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                // Requests fail at once while the resume is under way; the new socket answers after it.
                let deadline = Date().addingTimeInterval(20)
                var last: BatonError? = .connectionLost
                while last == .connectionLost && Date() < deadline {
                    do throws(BatonError) { try blocking.ping(); last = nil } catch { last = error; Thread.sleep(forTimeInterval: 0.01) }
                }
                continuation.resume(returning: last)
            }
        }
        XCTAssertNil(pinged, "a blocking call reads its reply from the resumed connection")
        XCTAssertFalse(client.isClosed)
    }
}
