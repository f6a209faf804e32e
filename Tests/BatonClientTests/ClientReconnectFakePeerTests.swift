import XCTest
import Foundation
import BatonProtocol
@testable import BatonClient

/// Automatic reconnect against scripted peers behind a Unix socket: the exact requests a reconnect
/// sends, what happens to requests in flight, the statuses the application sees, and giving up.
final class ClientReconnectFakePeerTests: XCTestCase {
    static let fast = ReconnectPolicy(initialBackoff: .milliseconds(10), maximumBackoff: .milliseconds(50))

    /// Collects a client's statuses in order.
    final class Statuses: @unchecked Sendable {
        private let condition = NSCondition()
        private var seen: [ClientStatus] = []
        init(_ client: BatonClient) {
            client.onStatusChange { [self] status in
                condition.lock()
                seen.append(status)
                condition.broadcast()
                condition.unlock()
            }
        }
        /// Waits until a status matches (20 s at most); returns every status so far.
        @discardableResult
        func waitFor(_ predicate: (ClientStatus) -> Bool) -> [ClientStatus] {
            let deadline = Date().addingTimeInterval(20)
            condition.lock()
            defer { condition.unlock() }
            while !seen.contains(where: predicate) {
                if !condition.wait(until: deadline) { break }
            }
            return seen
        }
    }

    func connect(_ listener: FakeListener, timeout: Duration = .seconds(5)) async throws -> BatonClient {
        try await BatonClient.connect(to: listener.endpoint, options: ClientOptions(
            clientName: "re", sessionTimeout: timeout, heartbeats: false, reconnect: Self.fast))
    }

    func testADropFailsTheRequestInFlightThenResumesTheSessionOnANewConnection() async throws {
        let listener = try FakeListener { descriptor in
            FakePeer(accepted: descriptor) { peer, id, request in
                if case .ping = request { peer.reply(id, .ping, .empty) } // get is never answered
            }
        }
        defer { listener.stop() }
        let client = try await connect(listener)
        let statuses = Statuses(client)
        let first = try XCTUnwrap(listener.waitForPeer(1))
        XCTAssertEqual(first.requests.map(\.request).dropFirst().first,
                       .openSession(timeoutMilliseconds: 5_000, flags: [.keepOnDisconnect, .resumedEvents]),
                       "a reconnecting client keeps its session past the connection")

        let inFlight = Task { () -> BatonError? in
            do throws(BatonError) { _ = try await client.get("/a"); return nil } catch { return error }
        }
        XCTAssertTrue(first.waitFor { $0.contains { if case .get = $0.request { true } else { false } } })
        first.close()
        let failure = await inFlight.value
        XCTAssertEqual(failure, .connectionLost, "in flight at the drop: failed, never resent")

        let second = try XCTUnwrap(listener.waitForPeer(2))
        statuses.waitFor { $0 == .resumed }
        XCTAssertEqual(second.requests.map(\.request), [
            .hello(version: ProtocolVersion.current, clientName: "re"),
            .resumeSession(sessionID: 42, secret: SessionSecret(high: 1, low: 2)),
        ])
        try await client.ping()
        XCTAssertEqual(statuses.waitFor { $0 == .resumed }, [.reconnecting(.connectionClosed), .resumed])
        XCTAssertFalse(client.isClosed)
        XCTAssertFalse(second.requests.contains { if case .get = $0.request { true } else { false } },
                       "the lost get is not resent")
    }

    func testARefusedResumeClosesTheClientWithSessionLost() async throws {
        let listener = try FakeListener { descriptor in
            FakePeer(accepted: descriptor, refusesResume: true) { peer, id, request in
                if case .resumeSession = request { peer.fail(id, .resumeSession, .sessionExpired, "session 42") }
            }
        }
        defer { listener.stop() }
        let client = try await connect(listener)
        let statuses = Statuses(client)
        let closedWith = MutexLock<BatonError?>(nil)
        client.onClose { error in closedWith.withLock { $0 = error } }
        listener.waitForPeer(1)?.close()
        let seen = statuses.waitFor { if case .closed = $0 { true } else { false } }
        guard case .closed(.sessionLost(let detail)) = seen.last else { return XCTFail("\(seen)") }
        XCTAssertTrue(detail.contains("sessionExpired"), detail)
        XCTAssertEqual(listener.peers.count, 2, "a refusal ends the reconnect at once: no further attempts")
        do {
            try await client.ping()
            XCTFail("a client that gave up is closed")
        } catch {
            guard case .sessionLost = error else { return XCTFail("\(error)") }
        }
        XCTAssertTrue(client.isClosed)
        try await Task.sleep(for: .milliseconds(100))
        guard case .sessionLost = closedWith.withLock({ $0 }) else { return XCTFail("onClose tells why") }
    }

    func testNoServerForTheSessionTimeoutClosesTheClientWithSessionLost() async throws {
        let listener = try FakeListener()
        let client = try await connect(listener, timeout: .milliseconds(300))
        let statuses = Statuses(client)
        let peer = try XCTUnwrap(listener.waitForPeer(1))
        listener.stop() // nothing listens any more: every attempt fails to connect
        peer.close()
        let seen = statuses.waitFor { if case .closed = $0 { true } else { false } }
        XCTAssertEqual(seen.first, .reconnecting(.connectionClosed))
        guard case .closed(.sessionLost(let detail)) = seen.last else { return XCTFail("\(seen)") }
        XCTAssertTrue(detail.contains("300 ms"), detail)
        XCTAssertEqual(listener.peers.count, 1)
    }

    func testRequestsWhileReconnectingFailAtOnceAndCloseStopsTheReconnect() async throws {
        let listener = try FakeListener()
        let client = try await connect(listener, timeout: .seconds(60))
        let statuses = Statuses(client)
        let peer = try XCTUnwrap(listener.waitForPeer(1))
        listener.stop()
        peer.close()
        statuses.waitFor { if case .reconnecting = $0 { true } else { false } }
        do {
            try await client.ping()
            XCTFail("no connection to send it on")
        } catch {
            XCTAssertEqual(error, .connectionLost)
        }
        client.disconnect()
        let seen = statuses.waitFor { if case .closed = $0 { true } else { false } }
        XCTAssertEqual(seen.last, .closed(.connectionClosed), "closed by the application, long before the timeout")
    }

    func testHoldEventsBecomeStatusesInServerOrder() async throws {
        let peer = FakePeer()
        let client = try await peer.client(options: ClientOptions(heartbeats: false))
        let stream = client.statusChanges()
        peer.send(.event(.lockSuspended(node: "/l/a", token: 7)))
        peer.send(.event(.lockResumed(node: "/l/a", token: 7)))
        peer.send(.event(.lockLost(node: "/l/a", token: 7, reason: .backendSessionLost)))
        peer.close()
        var seen: [ClientStatus] = []
        for await status in stream { seen.append(status) }
        XCTAssertEqual(seen, [.connected, .holdSuspended(node: "/l/a", token: 7), .holdResumed(node: "/l/a", token: 7),
                              .holdLost(LockLost(node: "/l/a", token: 7, reason: .backendSessionLost)),
                              .closed(.connectionClosed)])
    }
}
