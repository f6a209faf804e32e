import BatonProtocol
import BatonStore
import BatonTestSupport
import Foundation
import XCTest

/// `batond --metrics`: a real daemon, scraped over a plain socket while clients use it.
final class MetricsEndpointTests: DaemonTestCase {
    private func startDaemon(listensOnTCP: Bool = false) throws -> (daemon: TestDaemon, metricsPort: UInt16) {
        let port = try TestDaemon.freeLoopbackPort()
        let daemon = kept(try TestDaemon(TestDaemon.Options(listensOnTCP: listensOnTCP, arguments: ["--metrics", "127.0.0.1:\(port)"])))
        return (daemon, port)
    }

    private func scrape(_ port: UInt16, file: StaticString = #filePath, line: UInt = #line) throws -> Exposition {
        let response = try HTTPClient.get(port: port)
        XCTAssertEqual(response.status, 200, file: file, line: line)
        XCTAssertEqual(response.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8", file: file, line: line)
        XCTAssertEqual(response.headers["content-length"], String(response.body.utf8.count), file: file, line: line)
        return try Exposition(response.body)
    }

    func testCountersReflectTheRequestsServed() throws {
        let (daemon, port) = try startDaemon()
        let before = try scrape(port)
        XCTAssertEqual(before.types["baton_requests_total"], "counter")
        XCTAssertEqual(before.types["baton_sessions_open"], "gauge")
        XCTAssertEqual(before["baton_requests_total{opcode=\"create\"}"], 0)

        let client = try daemon.connect()
        var bytesSent = 0
        var requestID: UInt32 = 1
        func call(_ request: Request) throws -> Reply {
            let frame = Codec.encodeRequest(request, requestID: requestID)
            requestID += 1
            bytesSent += frame.count
            try client.sendRaw(frame)
            return try client.receiveReply()
        }
        _ = try call(.hello(version: ProtocolVersion.current, clientName: "metrics-test"))
        _ = try call(.openSession(timeoutMilliseconds: 0, flags: []))
        for name in ["a", "b", "c"] {
            _ = try call(.create(path: "/\(name)", data: Array(name.utf8), mode: .persistent)).result.get()
        }
        for _ in 0..<2 { XCTAssertNotNil(try call(.get(path: "/missing", watch: false)).result.failureCode) }
        for _ in 0..<4 { _ = try call(.ping).result.get() }
        _ = try call(.exists(path: "/a", watch: true)).result.get()
        _ = try call(.delete(path: "/a", expectedVersion: anyVersion)).result.get()  // fires the watch: one event
        XCTAssertEqual(try client.nextEvent(), .watch(type: .deleted, path: "/a"))

        let after = try scrape(port)
        func increase(_ series: String) -> Double? {
            guard let now = after[series], let then = before[series] else { return nil }
            return now - then
        }
        XCTAssertEqual(increase("baton_requests_total{opcode=\"hello\"}"), 1)
        XCTAssertEqual(increase("baton_requests_total{opcode=\"openSession\"}"), 1)
        XCTAssertEqual(increase("baton_requests_total{opcode=\"create\"}"), 3)
        XCTAssertEqual(increase("baton_requests_total{opcode=\"get\"}"), 2)
        XCTAssertEqual(increase("baton_requests_total{opcode=\"ping\"}"), 4)
        XCTAssertEqual(increase("baton_requests_total{opcode=\"delete\"}"), 1)
        XCTAssertEqual(increase("baton_requests_total{opcode=\"acquire\"}"), 0)
        XCTAssertEqual(increase("baton_errors_total{code=\"noNode\"}"), 2)
        XCTAssertEqual(increase("baton_errors_total{code=\"badVersion\"}"), 0)
        XCTAssertEqual(increase("baton_frames_received_total"), 13)
        XCTAssertEqual(increase("baton_frames_sent_total"), 14, "13 replies and 1 event")
        XCTAssertEqual(increase("baton_events_sent_total"), 1)
        XCTAssertEqual(increase("baton_network_read_bytes_total"), Double(bytesSent))
        XCTAssertGreaterThan(increase("baton_network_written_bytes_total") ?? 0, 0)
        XCTAssertEqual(increase("baton_connections_accepted_total"), 1)
        XCTAssertEqual(after["baton_connections_open{transport=\"unix\"}"], 1)
        XCTAssertEqual(after["baton_connections_open{transport=\"tcp\"}"], 0)
        XCTAssertEqual(after["baton_sessions_open"], 1)
        XCTAssertEqual(after["baton_nodes"], (before["baton_nodes"] ?? .nan) + 2, "three created, one deleted")
        XCTAssertEqual(after["baton_watches"], 0, "the watch fired and is gone")
        // The daemon is durable by default: the creates and the delete were logged and synced.
        XCTAssertGreaterThanOrEqual(increase("baton_log_appends_total") ?? 0, 4)
        XCTAssertGreaterThan(increase("baton_log_fsyncs_total") ?? 0, 0)
        XCTAssertGreaterThan(increase("baton_log_written_bytes_total") ?? 0, 0)
        XCTAssertNotNil(after["baton_snapshots_total"])
        XCTAssertNotNil(after["baton_snapshot_last_stall_microseconds"])
        XCTAssertGreaterThan(after["baton_process_resident_memory_bytes"] ?? 0, 1_000_000)
        XCTAssertEqual(increase("baton_metrics_requests_total"), 1, "the first scrape")

        // Gauges follow the state back down.
        client.close()
        var final = try scrape(port)
        for _ in 0..<100 where final["baton_sessions_open"] != 0 {
            usleep(20_000)
            final = try scrape(port)
        }
        XCTAssertEqual(final["baton_sessions_open"], 0, "a Unix disconnect ends the session")
        XCTAssertEqual(final["baton_connections_open{transport=\"unix\"}"], 0)
    }

    func testHealthAndReadinessProbes() throws {
        let (_, port) = try startDaemon()
        let health = try HTTPClient.get(port: port, path: "/healthz")
        XCTAssertEqual(health.status, 200)
        XCTAssertEqual(health.body, "ok\n")
        let readiness = try HTTPClient.get(port: port, path: "/readyz")
        XCTAssertEqual(readiness.status, 200)
        XCTAssertEqual(readiness.body, "ready\n")
        XCTAssertEqual(try HTTPClient.get(port: port, path: "/readyz", method: "HEAD").status, 200)
    }

    func testLatencyHistogramsCountRequestsGrantsAndFsyncs() throws {
        let (daemon, port) = try startDaemon()
        let before = try scrape(port)
        XCTAssertEqual(before.types["baton_request_service_seconds"], "histogram")
        XCTAssertEqual(before.types["baton_acquire_wait_seconds"], "histogram")
        XCTAssertEqual(before.types["baton_log_fsync_seconds"], "histogram")
        XCTAssertEqual(before["baton_acquire_wait_seconds_count"], 0)
        let servedBefore = try XCTUnwrap(before["baton_request_service_seconds_count"])
        let fsyncsBefore = try XCTUnwrap(before["baton_log_fsync_seconds_count"])

        let holder = try daemon.connect()
        try holder.handshake()  // hello, openSession: two requests
        let waiter = try daemon.connect()
        try waiter.handshake()
        for index in 0..<5 {
            _ = try holder.callSuccessfully(.create(path: "/h\(index)", data: [1], mode: .persistent))
        }
        guard case .granted(let node, let token) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/h"))) else {
            return XCTFail("the first acquire is granted")
        }
        let waitingID = try waiter.send(.acquire(LockRequest(path: "/locks/h")))
        XCTAssertEqual(try waiter.callSuccessfully(.ping), .empty)
        var exposition = try scrape(port)
        XCTAssertEqual(exposition["baton_acquire_wait_seconds_count"], 1, "the waiting acquire is not counted yet")
        _ = try holder.callSuccessfully(.release(node: node, token: token))
        XCTAssertEqual(try waiter.receiveReply().requestID, waitingID)

        exposition = try scrape(port)
        XCTAssertEqual(exposition["baton_acquire_wait_seconds_count"], 2)
        XCTAssertEqual(exposition["baton_acquire_wait_seconds_bucket{le=\"+Inf\"}"], 2)
        // hello and openSession twice, 5 creates, a ping, a release: 11 replies that are not grants.
        XCTAssertEqual(try XCTUnwrap(exposition["baton_request_service_seconds_count"]) - servedBefore, 11)
        XCTAssertGreaterThan(try XCTUnwrap(exposition["baton_request_service_seconds_sum"]), 0)
        // Every create was synced before its reply (--fsync batch).
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(exposition["baton_log_fsync_seconds_count"]) - fsyncsBefore, 5)
        var previous = 0.0
        for bound in LatencyHistogram.serviceBounds.map({ LatencyHistogram.seconds($0) }) + ["+Inf"] {
            let cumulative = try XCTUnwrap(exposition["baton_request_service_seconds_bucket{le=\"\(bound)\"}"], bound)
            XCTAssertGreaterThanOrEqual(cumulative, previous)
            previous = cumulative
        }
        XCTAssertEqual(previous, exposition["baton_request_service_seconds_count"])
    }

    func testLockHoldersAndWaitersAreReported() throws {
        let (daemon, port) = try startDaemon()
        let holder = try daemon.connect()
        try holder.handshake()
        let waiter = try daemon.connect()
        try waiter.handshake()
        guard case .granted(let node, let token) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/metrics"))) else {
            return XCTFail("the first acquire is granted")
        }
        let waitingID = try waiter.send(.acquire(LockRequest(path: "/locks/metrics")))
        // A ping after the acquire: once it is answered, the acquire has been queued.
        XCTAssertEqual(try waiter.callSuccessfully(.ping), .empty)
        var exposition = try scrape(port)
        XCTAssertEqual(exposition["baton_lock_holders"], 1)
        XCTAssertEqual(exposition["baton_lock_waiters"], 1)
        XCTAssertEqual(exposition["baton_requests_total{opcode=\"acquire\"}"], 2)

        _ = try holder.callSuccessfully(.release(node: node, token: token))
        XCTAssertEqual(try waiter.receiveReply().requestID, waitingID)
        exposition = try scrape(port)
        XCTAssertEqual(exposition["baton_lock_holders"], 1)
        XCTAssertEqual(exposition["baton_lock_waiters"], 0)
    }

    func testTCPConnectionsAndAuthenticationFailuresAreCounted() throws {
        let (daemon, port) = try startDaemon(listensOnTCP: true)
        let authenticated = try daemon.connectTCP()
        try authenticated.handshake()
        let stranger = try daemon.connectTCP(authenticating: false)
        try stranger.hello()
        XCTAssertEqual(try stranger.call(.authenticate(token: Array("wrong-token-wrong-token".utf8))).result.failureCode,
                       .notAuthorized)
        let exposition = try scrape(port)
        XCTAssertEqual(exposition["baton_connections_open{transport=\"tcp\"}"], 2)
        XCTAssertEqual(exposition["baton_authentication_successes_total"], 1)
        XCTAssertEqual(exposition["baton_authentication_failures_total"], 1)
        XCTAssertEqual(exposition["baton_errors_total{code=\"notAuthorized\"}"], 1)
    }

    func testBadHTTPGetsAnErrorAndLockClientsAreUndisturbed() throws {
        let (daemon, port) = try startDaemon()
        let client = try daemon.connect()
        try client.handshake()
        // A client that connects to the metrics port and says nothing holds nothing up.
        let idle = try HTTPClient.connect(port: port)

        let garbage: [(request: [UInt8], status: Int)] = [
            (Codec.encodeRequest(.hello(version: 1, clientName: "wrong port"), requestID: 1), 400),
            (Array("\u{1}\u{2}\u{3}\r\n\r\n".utf8), 400),
            (Array("GET /metrics\r\n\r\n".utf8), 400),
            (Array("get /metrics HTTP/1.1\r\n\r\n".utf8), 400),
            (Array("GET metrics HTTP/1.1\r\n\r\n".utf8), 400),
            (Array("GET /metrics HTTP/2.0\r\n\r\n".utf8), 505),
            (Array("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n".utf8), 404),
            (Array("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".utf8), 405),
            (Array("GET /metrics HTTP/1.1\r\n".utf8) + Array(repeating: UInt8(ascii: "x"), count: 9_000), 431),
        ]
        for (request, status) in garbage {
            let response = try HTTPClient.parse(try HTTPClient.exchange(port: port, request: request))
            XCTAssertEqual(response.status, status, String(decoding: request.prefix(40), as: UTF8.self).debugDescription)
            XCTAssertEqual(response.headers["connection"], "close")
            // The lock service answers in between, every time.
            XCTAssertEqual(try client.callSuccessfully(.ping), .empty)
        }
        _ = try client.callSuccessfully(.create(path: "/still-serving", data: [], mode: .ephemeral))
        guard case .exists(let stat?) = try client.callSuccessfully(.exists(path: "/still-serving", watch: false)) else {
            return XCTFail("the node should exist")
        }
        XCTAssertNotEqual(stat.ephemeralOwner, 0)

        let head = try HTTPClient.get(port: port, method: "HEAD")
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.body, "", "HEAD has no body")
        XCTAssertGreaterThan(Int(head.headers["content-length"] ?? "") ?? 0, 0)
        let query = try HTTPClient.get(port: port, path: "/metrics?name[]=baton_nodes")
        XCTAssertEqual(query.status, 200, "a query string is ignored")

        let exposition = try scrape(port)
        XCTAssertEqual(exposition["baton_sessions_open"], 1)
        idle.close()
        XCTAssertTrue(daemon.isRunning)
        XCTAssertEqual(daemon.stop(), .exited(0), "shutdown is not held up by the metrics endpoint")
    }

    func testAClientThatHalfClosesStillGetsTheWholeResponse() throws {
        let (_, port) = try startDaemon()
        for piece in [["GET /metrics HTTP/1.1\r\n\r\n"], ["GET /met", "rics HTTP/1.0\r\n", "\r\n"]] {
            let connection = try HTTPClient.connect(port: port)
            for part in piece {
                try connection.sendRaw(Array(part.utf8))
                usleep(5_000)
            }
            XCTAssertEqual(shutdown(connection.descriptor, Int32(SHUT_WR)), 0)
            let response = try HTTPClient.parse(try HTTPClient.readToEnd(connection.descriptor, timeoutSeconds: 10))
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual(response.headers["content-length"], String(response.body.utf8.count))
            XCTAssertNotNil(try Exposition(response.body)["baton_nodes"])
        }
    }

    func testWithoutTheFlagThereIsNoMetricsEndpoint() throws {
        let port = try TestDaemon.freeLoopbackPort()
        let daemon = kept(try TestDaemon())
        XCTAssertThrowsError(try RawConnection(port: port), "nothing listens unless --metrics is given")
        XCTAssertFalse(daemon.arguments.contains("--metrics"))
    }

    func testBadMetricsAddressIsRefused() throws {
        for value in ["nowhere", "example.com:9000", "127.0.0.1:0"] {
            let (termination, output) = try TestDaemon.runToCompletion(
                arguments: ["--socket", "/tmp/baton-metrics-refused.sock", "--in-memory", "--metrics", value])
            XCTAssertEqual(termination, .exited(1), value)
            XCTAssertTrue(output.hasPrefix("batond: error: "), output)
            XCTAssertTrue(output.contains("--metrics"), output)
        }
    }
}

private extension Result where Failure == ReplyError {
    var failureCode: ErrorCode? {
        if case .failure(let error) = self { return error.code }
        return nil
    }
}
