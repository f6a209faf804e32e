import XCTest
import Foundation
import Glibc
import BatonProtocol
@testable import BatonClient

/// Automatic reconnect against a real batond: the test cuts the client's socket (shutdown(2), as a
/// network failure or a peer reset ends it), the client reconnects and resumes its session.
final class ClientReconnectIntegrationTests: LiveDaemonTestCase {
    override func makeDaemon() throws -> LiveDaemon {
        try LiveDaemon(tcp: name.contains("TCP"))
    }

    func options(_ name: String, timeout: Duration = .seconds(10)) -> ClientOptions {
        daemon.tcpOptions(ClientOptions(clientName: name, sessionTimeout: timeout,
                                        reconnect: ReconnectPolicy(initialBackoff: .milliseconds(20), maximumBackoff: .milliseconds(200))))
    }

    /// Ends the client's current connection from under it.
    func cut(_ client: BatonClient) {
        XCTAssertEqual(shutdown(client.connection.descriptor, Int32(SHUT_RDWR)), 0)
    }

    func testTCPClientResumesItsSessionWithHoldsEphemeralsAndWatchesAfterACut() async throws {
        try await resumesWithEverything(try XCTUnwrap(daemon.tcpEndpoint))
    }

    func testUnixClientResumesItsSessionWithHoldsEphemeralsAndWatchesAfterACut() async throws {
        try await resumesWithEverything(daemon.endpoint)
    }

    func resumesWithEverything(_ endpoint: Endpoint) async throws {
        let client = try await BatonClient.connect(to: endpoint, options: options("re"))
        let statuses = ClientReconnectFakePeerTests.Statuses(client)
        let grant = try await client.acquire("/locks/r")
        try await client.create("/e", mode: .ephemeral)
        let fired = expectation(description: "the watch set before the cut fires after it")
        _ = try await client.exists("/w", watch: true) { event in
            if event.type == .created && event.path == "/w" { fired.fulfill() }
        }

        cut(client)
        XCTAssertEqual(statuses.waitFor { $0 == .resumed }, [.reconnecting(.connectionClosed), .resumed])
        let current = try await client.checkToken("/locks/r", token: grant.token)
        XCTAssertTrue(current, "the hold survived: same session")
        let owner = try await client.exists("/e")?.ephemeralOwner
        XCTAssertEqual(owner, client.session.id, "the ephemeral survived")
        let other = try await BatonClient.connect(to: daemon.endpoint, options: ClientOptions(clientName: "other"))
        try await other.create("/w")
        await fulfillment(of: [fired], timeout: 20)
        try await client.release(grant)
        XCTAssertFalse(client.isClosed)
    }

    func testABlockingClientReconnectsToo() throws {
        let client = try BlockingClient.connect(to: daemon.endpoint, options: options("blocking"))
        let statuses = ClientReconnectFakePeerTests.Statuses(client.client)
        let grant = try client.acquire("/locks/b")
        cut(client.client)
        XCTAssertEqual(statuses.waitFor { $0 == .resumed }, [.reconnecting(.connectionClosed), .resumed])
        XCTAssertTrue(try client.checkToken("/locks/b", token: grant.token))
        try client.release(grant)
    }

    func testAWaitingAcquireCutOffFailsConnectionLostAndIsNotLeftWaitingOnTheServer() async throws {
        let holder = try await BatonClient.connect(to: daemon.endpoint, options: ClientOptions(clientName: "holder"))
        let held = try await holder.acquire("/locks/w")
        let client = try await BatonClient.connect(to: daemon.endpoint, options: options("waiter"))
        let statuses = ClientReconnectFakePeerTests.Statuses(client)
        let waiting = Task { () -> BatonError? in
            do throws(BatonError) { _ = try await client.acquire("/locks/w"); return nil } catch { return error }
        }
        // Waiting on the server: inspect lists it.
        while try await holder.inspect("/locks/w").count < 2 { try await Task.sleep(for: .milliseconds(10)) }
        cut(client)
        let failure = await waiting.value
        XCTAssertEqual(failure, .connectionLost)
        statuses.waitFor { $0 == .resumed }
        let entries = try await holder.inspect("/locks/w")
        XCTAssertEqual(entries.map(\.sessionID), [holder.session.id],
                       "the wait ended with its connection: the resumed session does not hold or wait unasked")
        try await holder.release(held)
        let mine = try await client.inspect("/locks/w")
        XCTAssertEqual(mine, [], "nothing was resent: the lock is free")
    }

    func testADaemonGoneForTheSessionTimeoutClosesTheClientWithSessionLost() async throws {
        let client = try await BatonClient.connect(to: daemon.endpoint, options: options("gone", timeout: .milliseconds(600)))
        let statuses = ClientReconnectFakePeerTests.Statuses(client)
        daemon.stop()
        let seen = statuses.waitFor { if case .closed = $0 { true } else { false } }
        guard case .reconnecting = seen.first, case .closed(.sessionLost) = seen.last else { return XCTFail("\(seen)") }
        do {
            try await client.ping()
            XCTFail("closed for good")
        } catch {
            guard case .sessionLost = error else { return XCTFail("\(error)") }
        }
    }
}
