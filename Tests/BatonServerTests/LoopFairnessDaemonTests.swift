import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// Issue 8 items 4 and 8 against the real `batond`: one client's heavy pipeline does not cost another
/// client its session, and a client that reads gets every reply however many it pipelines.
final class LoopFairnessDaemonTests: DaemonTestCase {
    private func startDaemon(_ arguments: [String] = []) throws -> TestDaemon {
        var options = TestDaemon.Options(arguments: arguments)
        options.logLevel = "info"
        return kept(try TestDaemon(options))
    }

    /// The scenario at test size: a client pipelines many `children` of a big node while a
    /// lock holder with a short session timeout pings on time and a waiter queues behind it. The
    /// holder keeps its session and its lock; the waiter is not granted until the holder releases.
    func testHeavyPipelineDoesNotExpireASessionThatPingsOnTime() throws {
        let daemon = try startDaemon(["--session-timeout-min-ms", "100"])
        let heavy = try daemon.connect()
        try heavy.handshake(clientName: "heavy")
        _ = try heavy.callSuccessfully(.create(path: "/big", data: [], mode: .persistent))
        for batch in 0..<8 {
            let creates = (0..<1_000).map { index in
                MultiOperation.create(path: "/big/child-\(batch)-\(index)", data: [], mode: .persistent)
            }
            _ = try heavy.callSuccessfully(.multi(creates))
        }

        let holder = try daemon.connect()
        try holder.handshake(clientName: "holder", sessionTimeoutMilliseconds: 400)
        guard case .granted(let node, let token) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/stall"))) else {
            return XCTFail("the holder should be granted")
        }
        let waiter = try daemon.connect()
        try waiter.handshake(clientName: "waiter", sessionTimeoutMilliseconds: 600_000)
        let acquireID = try waiter.send(.acquire(LockRequest(path: "/locks/stall")))

        // The holder pings every 50 ms without waiting for replies: on time whatever the server does.
        let stop = Flag()
        let pinger = Thread {
            while !stop.isSet {
                do { try holder.send(.ping) } catch { return }
                usleep(50_000)
            }
        }
        pinger.start()
        defer { stop.set() }

        // 600 pipelined listings of 8,000 names (about 8 KB of requests, 60 MB of replies), read as
        // they come.
        let listings = 600
        var requests: [UInt8] = []
        for _ in 0..<listings {
            requests += Codec.encodeRequest(.children(path: "/big", watch: false), requestID: heavy.takeRequestID())
        }
        try heavy.sendRaw(requests)
        for _ in 0..<listings {
            let reply = try heavy.receiveReply(timeoutSeconds: 120)
            guard case .success(.children(_, let names, _)) = reply.result else { return XCTFail("children: \(reply.result)") }
            XCTAssertEqual(names.count, 8_000)
        }
        stop.set()
        while !pinger.isFinished { usleep(1_000) }

        // Every ping was answered; no session expiry, no lost lock.
        let checkID = try holder.send(.checkToken(path: "/locks/stall", token: token))
        while true {
            let message = try holder.receive(timeoutSeconds: 30)
            guard case .reply(let reply) = message else { return XCTFail("the holder got \(message)") }
            if reply.requestID == checkID {
                XCTAssertEqual(try reply.result.get(), .tokenStatus(current: true), "the holder's token is still current")
                break
            }
            XCTAssertEqual(try reply.result.get(), .empty, "ping \(reply.requestID)")
        }
        XCTAssertFalse(waiter.isReadable(timeoutSeconds: 0.05), "the waiter must not be granted while the holder lives")
        _ = try holder.callSuccessfully(.release(node: node, token: token))
        let granted = try waiter.receiveReply()
        XCTAssertEqual(granted.requestID, acquireID)
        guard case .success(.granted(_, let next)) = granted.result else { return XCTFail("waiter: \(granted.result)") }
        XCTAssertGreaterThan(next, token)
    }

    /// Issue 8 item 8: 16 pipelined `get`s of a 1 MiB node in one write, read continuously: all 16
    /// replies arrive (before: none, and the connection was closed).
    func testSixteenPipelinedMegabyteGetsAllReachAClientThatReads() throws {
        let daemon = try startDaemon()
        let client = try daemon.connect()
        try client.handshake()
        let data = (0..<1_048_576).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        _ = try client.callSuccessfully(.create(path: "/mib", data: data, mode: .persistent))
        var batch: [UInt8] = []
        var expected: [UInt32] = []
        for _ in 0..<16 {
            let requestID = client.takeRequestID()
            expected.append(requestID)
            batch += Codec.encodeRequest(.get(path: "/mib", watch: false), requestID: requestID)
        }
        try client.sendRaw(batch)
        for requestID in expected {
            let reply = try client.receiveReply(timeoutSeconds: 30)
            XCTAssertEqual(reply.requestID, requestID)
            guard case .success(.data(_, let received)) = reply.result else { return XCTFail("get: \(reply.result)") }
            XCTAssertEqual(received, data)
        }
        XCTAssertEqual(try client.callSuccessfully(.ping), .empty)
    }
}

/// A flag set by one thread and read by another.
private final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
