import BatonEngine
import BatonProtocol
@testable import BatonStore
@testable import BatonServer
import XCTest

/// The pure parts of the metrics endpoint: the HTTP request check and the exposition.
final class MetricsFormatTests: XCTestCase {
    private func examine(_ text: String) -> MetricsHTTP.Outcome {
        MetricsHTTP.examine(Array(text.utf8)[...])
    }

    func testRequestsAreAnsweredOnlyOnceTheHeadIsWhole() {
        XCTAssertEqual(examine(""), .incomplete)
        XCTAssertEqual(examine("GET /metr"), .incomplete)
        XCTAssertEqual(examine("GET /metrics HTTP/1.1\r\n"), .incomplete)
        XCTAssertEqual(examine("GET /metrics HTTP/1.1\r\nHost: a\r\n"), .incomplete)
        XCTAssertEqual(examine("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"), .metrics(includesBody: true))
        XCTAssertEqual(examine("GET /metrics HTTP/1.0\n\n"), .metrics(includesBody: true))
        XCTAssertEqual(examine("HEAD /metrics HTTP/1.1\r\n\r\n"), .metrics(includesBody: false))
        XCTAssertEqual(examine("GET /metrics?x=1 HTTP/1.1\r\n\r\n"), .metrics(includesBody: true))
    }

    func testEveryByteSplitGivesTheSameAnswer() {
        let request = Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Prometheus/2\r\n\r\n".utf8)
        for end in 0..<request.count {
            XCTAssertEqual(MetricsHTTP.examine(request[0..<end]), .incomplete, "after \(end) bytes")
        }
        XCTAssertEqual(MetricsHTTP.examine(request[...]), .metrics(includesBody: true))
    }

    func testGarbageIsRefusedAsSoonAsItShows() {
        XCTAssertEqual(MetricsHTTP.examine([0, 0, 0, 0x13, 0x01][...]), .respond(status: 400, includesBody: true))
        XCTAssertEqual(examine("GE\u{7f}"), .respond(status: 400, includesBody: true))
        XCTAssertEqual(examine("GET /metrics\r\n"), .respond(status: 400, includesBody: true))
        XCTAssertEqual(examine("GET  /metrics HTTP/1.1\r\n"), .respond(status: 400, includesBody: true))
        XCTAssertEqual(examine("GET metrics HTTP/1.1\r\n"), .respond(status: 400, includesBody: true))
        XCTAssertEqual(examine("get /metrics HTTP/1.1\r\n"), .respond(status: 400, includesBody: true))
        XCTAssertEqual(examine("GET /metrics SPDY/3\r\n"), .respond(status: 400, includesBody: true))
        XCTAssertEqual(examine("GET /metrics HTTP/2.0\r\n"), .respond(status: 505, includesBody: true))
        XCTAssertEqual(examine("GET /m\u{1}trics HTTP/1.1\r\n"), .respond(status: 400, includesBody: true))
    }

    func testOtherPathsAndMethods() {
        XCTAssertEqual(examine("GET / HTTP/1.1\r\n\r\n"), .respond(status: 404, includesBody: true))
        XCTAssertEqual(examine("GET /healthz HTTP/1.1\r\n\r\n"), .health(includesBody: true))
        XCTAssertEqual(examine("HEAD /readyz?verbose HTTP/1.1\r\n\r\n"), .readiness(includesBody: false))
        XCTAssertEqual(examine("GET /readyz/ HTTP/1.1\r\n\r\n"), .respond(status: 404, includesBody: true))
        XCTAssertEqual(examine("GET /metrics/ HTTP/1.1\r\n\r\n"), .respond(status: 404, includesBody: true))
        XCTAssertEqual(examine("HEAD /other HTTP/1.1\r\n\r\n"), .respond(status: 404, includesBody: false))
        XCTAssertEqual(examine("POST /metrics HTTP/1.1\r\n\r\n"), .respond(status: 405, includesBody: true))
        XCTAssertEqual(examine("DELETE /metrics HTTP/1.1\r\n\r\n"), .respond(status: 405, includesBody: true))
    }

    func testHistogramsAreCumulativeWithSumAndCount() throws {
        var histogram = LatencyHistogram(boundsNanoseconds: [1_000, 1_000_000])
        for nanoseconds: UInt64 in [500, 1_000, 2_000, 5_000_000] { histogram.record(nanoseconds: nanoseconds) }
        let text = histogram.exposition(name: "baton_test_seconds", help: "A test.")
        let exposition = try Exposition(text)
        XCTAssertEqual(exposition.types["baton_test_seconds"], "histogram")
        XCTAssertEqual(exposition["baton_test_seconds_bucket{le=\"1e-06\"}"], 2, text)
        XCTAssertEqual(exposition["baton_test_seconds_bucket{le=\"0.001\"}"], 3, text)
        XCTAssertEqual(exposition["baton_test_seconds_bucket{le=\"+Inf\"}"], 4, text)
        XCTAssertEqual(exposition["baton_test_seconds_count"], 4)
        XCTAssertEqual(try XCTUnwrap(exposition["baton_test_seconds_sum"]), 0.0050035, accuracy: 1e-12)
    }

    func testTheRequestHeadIsBounded() {
        let long = "GET /metrics HTTP/1.1\r\n" + String(repeating: "X-Filler: y\r\n", count: 1_000)
        let bytes = Array(long.utf8).prefix(MetricsHTTP.requestHeadBytesMax)
        XCTAssertEqual(MetricsHTTP.examine(bytes), .respond(status: 431, includesBody: true))
        let noLineBreak = [UInt8](repeating: UInt8(ascii: "a"), count: MetricsHTTP.requestHeadBytesMax)
        XCTAssertEqual(MetricsHTTP.examine(noLineBreak[...]), .respond(status: 431, includesBody: true))
        XCTAssertEqual(MetricsHTTP.examine(noLineBreak.dropLast()), .incomplete)
    }

    func testResponsesAnnounceLengthAndClose() {
        let response = String(decoding: MetricsHTTP.response(status: 200, body: Array("abc\n".utf8),
                                                             contentType: MetricsHTTP.contentType, includesBody: true),
                              as: UTF8.self)
        XCTAssertEqual(response, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                       + "Content-Length: 4\r\nConnection: close\r\n\r\nabc\n")
        let head = String(decoding: MetricsHTTP.response(status: 200, body: Array("abc\n".utf8), includesBody: false),
                          as: UTF8.self)
        XCTAssertTrue(head.hasSuffix("Content-Length: 4\r\nConnection: close\r\n\r\n"), head)
        let refused = String(decoding: MetricsHTTP.errorResponse(status: 405, includesBody: true), as: UTF8.self)
        XCTAssertTrue(refused.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"), refused)
        XCTAssertTrue(refused.contains("Allow: GET, HEAD\r\n"), refused)
    }

    // MARK: Exposition

    private func render(_ registry: MetricsRegistry, _ sample: MetricsSample) throws -> Exposition {
        try Exposition(String(decoding: registry.exposition(sample), as: UTF8.self))
    }

    func testCountersMirrorTheirTotalsAcrossScrapes() throws {
        let registry = MetricsRegistry(includesStore: true)
        var sample = MetricsSample()
        sample.counters.requestsByOpcode[Int(Opcode.create.rawValue)] = 5
        sample.counters.countError(.noNode)
        sample.counters.bytesRead = 1_000
        sample.store = StoreMetrics()
        sample.store?.recordsAppended = 7
        sample.store?.fsyncCount = 2
        var exposition = try render(registry, sample)
        XCTAssertEqual(exposition["baton_requests_total{opcode=\"create\"}"], 5)
        XCTAssertEqual(exposition["baton_requests_total{opcode=\"get\"}"], 0)
        XCTAssertEqual(exposition["baton_errors_total{code=\"noNode\"}"], 1)
        XCTAssertNil(exposition["baton_errors_total{code=\"ok\"}"], "ok is not an error")
        XCTAssertEqual(exposition["baton_network_read_bytes_total"], 1_000)
        XCTAssertEqual(exposition["baton_log_appends_total"], 7)
        XCTAssertEqual(exposition["baton_log_fsyncs_total"], 2)
        XCTAssertEqual(exposition.types["baton_requests_total"], "counter")
        XCTAssertEqual(exposition.types["baton_nodes"], "gauge")

        sample.counters.requestsByOpcode[Int(Opcode.create.rawValue)] = 8
        sample.counters.bytesRead = 1_500
        sample.store?.recordsAppended = 9
        exposition = try render(registry, sample)
        XCTAssertEqual(exposition["baton_requests_total{opcode=\"create\"}"], 8, "the total, not the increase")
        XCTAssertEqual(exposition["baton_network_read_bytes_total"], 1_500)
        XCTAssertEqual(exposition["baton_log_appends_total"], 9)
        XCTAssertEqual(exposition["baton_errors_total{code=\"noNode\"}"], 1)
    }

    func testEngineGaugesAndOptionalFamilies() throws {
        let memory = MetricsRegistry(includesStore: false)
        var sample = MetricsSample()
        sample.unixConnections = 3
        sample.tcpConnections = 1
        var statistics = EngineStatistics()
        statistics.sessions = 4
        statistics.nodes = 12
        statistics.watches = 2
        sample.engine = statistics
        var exposition = try render(memory, sample)
        XCTAssertEqual(exposition["baton_connections_open{transport=\"unix\"}"], 3)
        XCTAssertEqual(exposition["baton_connections_open{transport=\"tcp\"}"], 1)
        XCTAssertEqual(exposition["baton_sessions_open"], 4)
        XCTAssertEqual(exposition["baton_nodes"], 12)
        XCTAssertEqual(exposition["baton_watches"], 2)
        XCTAssertNil(exposition.types["baton_log_appends_total"], "no log in memory")
        XCTAssertNil(exposition.types["baton_lock_holders"], "not reported for an engine that cannot count them")

        statistics.lockHolders = 2
        statistics.lockWaiters = 5
        sample.engine = statistics
        exposition = try render(memory, sample)
        XCTAssertEqual(exposition["baton_lock_holders"], 2)
        XCTAssertEqual(exposition["baton_lock_waiters"], 5)
    }

    func testResidentMemoryIsReadOnLinux() throws {
        #if os(Linux)
        let bytes = try XCTUnwrap(MetricsRegistry.residentMemoryBytes())
        XCTAssertGreaterThan(bytes, 1_000_000)
        XCTAssertLessThan(bytes, 64 * 1_073_741_824)
        #endif
    }
}
