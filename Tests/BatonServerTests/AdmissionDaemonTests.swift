@testable import BatonServer
import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// Admission against a real batond (PROTOCOL.md §8, "Admission"): what an unauthenticated peer can
/// cost, how long a connection may take, and what a wrong-token storm gets.
final class AdmissionDaemonTests: XCTestCase {
    private var daemons: [TestDaemon] = []

    override func tearDown() {
        if let run = testRun, run.failureCount + run.unexpectedExceptionCount > 0 {
            for daemon in daemons { print("--- batond log (\(daemon.directory)):\n\(daemon.standardError.suffix(20_000))") }
        }
        daemons.removeAll()
    }

    private func startDaemon(_ arguments: [String], logLevel: String = "debug") throws -> TestDaemon {
        var options = TestDaemon.Options(listensOnTCP: true, arguments: arguments)
        options.logLevel = logLevel
        let daemon = try TestDaemon(options)
        daemons.append(daemon)
        return daemon
    }

    /// The one unattributed error a closing connection got (request id 0, opcode hello), read to the close.
    private func closingError(_ connection: RawConnection, file: StaticString = #filePath, line: UInt = #line) throws -> ReplyError? {
        let messages = try connection.readUntilClosed(timeoutSeconds: 15)
        guard let last = messages.last, case .reply(let reply) = last else {
            XCTFail("expected an error frame before the close, got \(messages)", file: file, line: line)
            return nil
        }
        XCTAssertEqual(reply.requestID, 0, file: file, line: line)
        XCTAssertEqual(reply.opcode, .hello, file: file, line: line)
        guard case .failure(let error) = reply.result else {
            XCTFail("expected an error, got \(reply)", file: file, line: line)
            return nil
        }
        return error
    }

    private static func lengthPrefix(_ length: Int) -> [UInt8] {
        [UInt8(length >> 24 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
    }

    /// Resident memory of a process, from /proc.
    static func residentBytes(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kibibytes = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else {
            throw TestSupportError.unexpected("no VmRSS in /proc/\(pid)/status")
        }
        return kibibytes * 1_024
    }

    // MARK: Memory

    /// Thousands of TCP connections that start a frame and stop: half declare a frame near the full
    /// limit and send 60 KiB of it (refused at once: the limit before authentication is small), half
    /// stay inside that limit and are held. Resident memory grows by a few KiB per connection, not by
    /// what the length prefixes announce, and a local client still connects and pings meanwhile.
    func testPartialFramesFromThousandsOfConnectionsKeepMemoryBounded() throws {
        let count = 2_000
        let daemon = try startDaemon(["--unauthenticated-connections-max", "\(count * 2)", "--hello-timeout-ms", "120000",
                                      "--authenticate-timeout-ms", "120000", "--partial-frame-timeout-ms", "120000"],
                                     logLevel: "info")
        let local = try daemon.connect()
        try local.handshake()
        XCTAssertEqual(try local.callSuccessfully(.ping), .empty)
        let before = try Self.residentBytes(daemon.pid)

        var attackers: [RawConnection] = []
        let big = Self.lengthPrefix(1_000_000) + [UInt8](repeating: 0x41, count: 60 * 1_024)
        let small = Self.lengthPrefix(4_000) + [UInt8](repeating: 0x41, count: 3_000)
        for index in 0..<count {
            let attacker = try RawConnection(port: XCTUnwrap(daemon.tcpPort))
            do {
                try attacker.sendRaw(index % 2 == 0 ? big : small)
            } catch TestSupportError.closed {
                // Refused while sending: what the limit is for.
            }
            attackers.append(attacker)
        }
        // Whatever the attackers sent has been read once a later request of the local client is answered.
        let started = Date()
        let fresh = try daemon.connect()
        try fresh.handshake()
        XCTAssertEqual(try fresh.callSuccessfully(.ping), .empty)
        let connectAndPing = Date().timeIntervalSince(started)
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertEqual(try local.callSuccessfully(.ping), .empty)
        let during = try Self.residentBytes(daemon.pid)
        let perConnection = max(0, during - before) / count
        print("admission figures: batond RSS \(before / 1_024) KiB before, \(during / 1_024) KiB under \(count) partial-frame "
            + "TCP connections (\(perConnection) bytes each); a local connect+hello+openSession+ping took \(Int(connectAndPing * 1_000)) ms")
        XCTAssertLessThan(perConnection, 16 * 1_024, "resident memory per partial-frame connection")

        // The small ones are held (inside every limit, before their deadlines); the big ones were refused.
        let refused = try closingError(attackers[0])
        XCTAssertEqual(refused?.code, .frameTooLarge)
        XCTAssertFalse(attackers[1].isReadable(timeoutSeconds: 0.1), "a frame inside the limit waits for its deadline")
        for attacker in attackers { attacker.close() }
        XCTAssertEqual(try local.callSuccessfully(.ping), .empty)
    }

    // MARK: Budgets

    /// Unauthenticated TCP connections have their own small budget: past it a TCP peer gets
    /// `tooManyConnections` (a frame, then the close), while Unix clients still connect and work.
    func testLocalClientsConnectWhileUnauthenticatedTCPConnectionsFillTheirBudget() throws {
        let budget = 20
        let daemon = try startDaemon(["--unauthenticated-connections-max", "\(budget)"])
        let port = try XCTUnwrap(daemon.tcpPort)
        var strangers: [RawConnection] = []
        for _ in 0..<budget {
            let stranger = try RawConnection(port: port)
            try stranger.hello()
            strangers.append(stranger)
        }
        let excess = try RawConnection(port: port)
        XCTAssertEqual(try closingError(excess)?.code, .tooManyConnections)

        let local = try daemon.connect()
        try local.handshake()
        XCTAssertEqual(try local.callSuccessfully(.ping), .empty)

        // Authenticating leaves the budget: a slot is free again.
        try strangers[0].authenticate(token: XCTUnwrap(daemon.tcpToken))
        let next = try RawConnection(port: port)
        try next.hello()
        XCTAssertEqual(try next.callSuccessfully(.ping), .empty)
        // And that one filled it again.
        XCTAssertEqual(try closingError(RawConnection(port: port))?.code, .tooManyConnections)
        // Closing one frees its slot.
        strangers[1].close()
        XCTAssertEqual(try local.callSuccessfully(.ping), .empty)  // the close has been seen
        let afterClose = try RawConnection(port: port)
        try afterClose.hello()
        XCTAssertEqual(try afterClose.callSuccessfully(.ping), .empty)
    }

    /// Before authentication a TCP frame may be only a few KiB; after it, the full limit applies, even
    /// for a frame sent in the same write as the `authenticate`.
    func testFramesAreSmallUntilTheConnectionAuthenticates() throws {
        let daemon = try startDaemon(["--unauthenticated-frame-bytes", "4096"])
        let port = try XCTUnwrap(daemon.tcpPort)
        let token = try XCTUnwrap(daemon.tcpToken)

        let stranger = try RawConnection(port: port)
        try stranger.hello()
        try stranger.sendRaw(Self.lengthPrefix(5_000))
        let error = try closingError(stranger)
        XCTAssertEqual(error?.code, .frameTooLarge)

        // hello, authenticate, openSession and a 100 KB create in one write.
        let client = try RawConnection(port: port)
        var bytes = Codec.encodeRequest(.hello(version: ProtocolVersion.current, clientName: "t"), requestID: client.takeRequestID())
        bytes += Codec.encodeRequest(.authenticate(token: token), requestID: client.takeRequestID())
        bytes += Codec.encodeRequest(.openSession(timeoutMilliseconds: 0, flags: []), requestID: client.takeRequestID())
        let createID = client.takeRequestID()
        bytes += Codec.encodeRequest(.create(path: "/big", data: [UInt8](repeating: 7, count: 100_000), mode: .persistent),
                                     requestID: createID)
        try client.sendRaw(bytes)
        var replies: [Reply] = []
        for _ in 0..<4 { replies.append(try client.receiveReply()) }
        XCTAssertEqual(replies.map(\.result.failureCode), [nil, nil, nil, nil], "\(replies)")
        XCTAssertEqual(replies.last?.requestID, createID)

        // Unix connections are authenticated by the socket's permissions: the full limit at once.
        let local = try daemon.connect()
        try local.handshake()
        guard case .created = try local.callSuccessfully(.create(path: "/big2", data: [UInt8](repeating: 7, count: 100_000),
                                                                 mode: .persistent)) else {
            return XCTFail("a big create over Unix")
        }
    }

    /// The input held for all connections together has a budget: the read that would go over it
    /// closes its connection; the others, and new clients, go on.
    func testInputBudgetClosesTheConnectionThatWouldExceedIt() throws {
        // The smallest budget allowed: one whole frame.
        let daemon = try startDaemon(["--input-budget-bytes", "1114112"])
        let first = try daemon.connect()
        try first.handshake()
        try first.sendRaw(Self.lengthPrefix(1_000_000) + [UInt8](repeating: 0x41, count: 900_000))
        Thread.sleep(forTimeInterval: 0.3)
        let witness = try daemon.connect()
        try witness.handshake()
        XCTAssertEqual(try witness.callSuccessfully(.ping), .empty)

        let second = try daemon.connect()
        try second.handshake()
        do {
            try second.sendRaw(Self.lengthPrefix(1_000_000) + [UInt8](repeating: 0x41, count: 300_000))
        } catch TestSupportError.closed {
            // Cut while sending: what the budget is for.
        }
        XCTAssertEqual(try second.readUntilClosed(), [], "closed without a frame")
        XCTAssertFalse(first.isReadable(timeoutSeconds: 0.2), "the connection that stayed within the budget is kept")
        XCTAssertEqual(try witness.callSuccessfully(.ping), .empty)
        XCTAssertTrue(daemon.standardError.contains("input budget"), daemon.standardError)
    }

    /// The output queued to all connections together has a budget: clients that do not read are
    /// dropped once their replies would go over it; a client that reads is served.
    func testOutputBudgetDropsClientsThatDoNotRead() throws {
        // The smallest budget allowed (one client's output), and a high-water mark that lets each
        // non-reader queue several MiB.
        let daemon = try startDaemon(["--output-budget-bytes", "33554432", "--output-high-water-bytes", "6291456"])
        let writer = try daemon.connect()
        try writer.handshake()
        XCTAssertNil(try writer.call(.create(path: "/big", data: [UInt8](repeating: 9, count: 1_000_000), mode: .persistent))
            .result.failureCode)
        var sleepers: [RawConnection] = []
        for _ in 0..<10 {
            let sleeper = try daemon.connect()
            try sleeper.handshake()
            sleeper.setReceiveBufferBytes(4_096)
            for _ in 0..<8 { try sleeper.send(.get(path: "/big", watch: false)) }
            sleepers.append(sleeper)
        }
        XCTAssertEqual(try writer.callSuccessfully(.ping), .empty)
        var dropped = 0
        for sleeper in sleepers {
            // A dropped one ends after whatever the kernel had taken; a kept one has its replies waiting.
            if (try? sleeper.readUntilClosed(timeoutSeconds: 1)) != nil { dropped += 1 }
        }
        XCTAssertGreaterThan(dropped, 0, "some clients that did not read were dropped")
        XCTAssertTrue(daemon.standardError.contains("output budget"), daemon.standardError)
        guard case .data(_, let data) = try writer.callSuccessfully(.get(path: "/big", watch: false)) else {
            return XCTFail("a reading client is served")
        }
        XCTAssertEqual(data.count, 1_000_000)
    }

    // MARK: Deadlines

    /// A connection that trickles a frame, one that never says hello, one that never authenticates,
    /// and a Unix one that starts a frame and stops are each closed with `deadlineExceeded`; a quiet
    /// client that did its handshake stays.
    func testSlowConnectionsAreClosedByTheirDeadlines() throws {
        let daemon = try startDaemon(["--hello-timeout-ms", "400", "--authenticate-timeout-ms", "800",
                                      "--partial-frame-timeout-ms", "400"])
        let port = try XCTUnwrap(daemon.tcpPort)
        let quiet = try daemon.connect()
        try quiet.handshake()
        let silent = try RawConnection(port: port)
        let unproven = try RawConnection(port: port)
        try unproven.hello()

        // Slowloris: a frame inside the limit, one byte at a time.
        let trickler = try RawConnection(port: port)
        try trickler.sendRaw(Self.lengthPrefix(3_000))
        let giveUp = Date().addingTimeInterval(15)
        while Date() < giveUp, !trickler.isReadable(timeoutSeconds: 0.05) {
            do { try trickler.sendRaw([0x41]) } catch TestSupportError.closed { break }
        }
        XCTAssertEqual(try closingError(trickler)?.code, .deadlineExceeded)
        XCTAssertEqual(try closingError(silent)?.code, .deadlineExceeded)
        let unprovenError = try closingError(unproven)
        XCTAssertEqual(unprovenError?.code, .deadlineExceeded)
        XCTAssertTrue(unprovenError?.message.contains("authenticate") == true, "\(String(describing: unprovenError))")

        // Authenticated (Unix), then a frame begun and left: the partial-frame deadline.
        let stalled = try daemon.connect()
        try stalled.handshake()
        let ping = Codec.encodeRequest(.ping, requestID: stalled.takeRequestID())
        try stalled.sendRaw(Array(ping.prefix(6)))
        let stalledError = try closingError(stalled)
        XCTAssertEqual(stalledError?.code, .deadlineExceeded)
        XCTAssertTrue(stalledError?.message.contains("frame") == true, "\(String(describing: stalledError))")

        XCTAssertEqual(try quiet.callSuccessfully(.ping), .empty, "a client that did its handshake is not hurried")
    }

    /// A connection that sends nothing for the idle deadline is closed; one that pings is not.
    func testIdleConnectionsAreClosed() throws {
        let daemon = try startDaemon(["--session-timeout-min-ms", "50", "--session-timeout-max-ms", "500",
                                      "--idle-timeout-ms", "800"])
        let idle = try daemon.connect()
        try idle.hello()
        let busy = try daemon.connect()
        try busy.handshake(sessionTimeoutMilliseconds: 500)
        let giveUp = Date().addingTimeInterval(15)
        while Date() < giveUp, !idle.isReadable(timeoutSeconds: 0.1) {
            XCTAssertEqual(try busy.callSuccessfully(.ping), .empty)
        }
        let error = try closingError(idle)
        XCTAssertEqual(error?.code, .deadlineExceeded)
        XCTAssertTrue(error?.message.contains("nothing received") == true, "\(String(describing: error))")
        XCTAssertEqual(try busy.callSuccessfully(.ping), .empty)
    }

    /// An idle deadline not longer than the longest session timeout is refused at start.
    func testIdleDeadlineShorterThanSessionsIsRefused() throws {
        let daemon = try startDaemon([])
        let (termination, output) = try TestDaemon.runToCompletion(arguments: [
            "--socket", daemon.directory + "/other.sock", "--in-memory", "--idle-timeout-ms", "1000"])
        XCTAssertEqual(termination, .exited(1), output)
        XCTAssertTrue(output.contains("idle deadline"), output)
    }

    // MARK: Quotas

    private func quotaError(_ reply: Reply, file: StaticString = #filePath, line: UInt = #line) -> String {
        guard case .failure(let error) = reply.result else {
            XCTFail("expected quotaExceeded, got \(reply)", file: file, line: line)
            return ""
        }
        XCTAssertEqual(error.code, .quotaExceeded, "\(error)", file: file, line: line)
        return error.message
    }

    /// Nodes a session created and still has: past the quota `quotaExceeded` (naming it), a delete
    /// makes room, and another session has its own count. Lock waiter nodes count too.
    func testNodesPerSessionQuota() throws {
        let daemon = try startDaemon(["--nodes-per-session-max", "3"])
        let client = try daemon.connect()
        try client.handshake()
        for name in ["a", "b", "c"] {
            XCTAssertNil(try client.call(.create(path: "/\(name)", data: [], mode: .persistent)).result.failureCode)
        }
        XCTAssertTrue(quotaError(try client.call(.create(path: "/d", data: [], mode: .persistent))).contains("nodesPerSessionMax"))
        XCTAssertTrue(quotaError(try client.call(.acquire(LockRequest(path: "/a/lock", waitMilliseconds: 0)))).contains("nodesPerSessionMax"))
        XCTAssertEqual(try client.call(.multi([.create(path: "/m1", data: [], mode: .persistent)])).result.failureCode, .quotaExceeded)
        XCTAssertNil(try client.call(.delete(path: "/c", expectedVersion: -1)).result.failureCode)
        XCTAssertNil(try client.call(.create(path: "/d", data: [], mode: .ephemeral)).result.failureCode)

        let other = try daemon.connect()
        try other.handshake()
        XCTAssertNil(try other.call(.create(path: "/e", data: [], mode: .persistent)).result.failureCode)
        // The first session's nodes outlive it (persistent) and count for no one after it.
        client.close()
        XCTAssertEqual(try other.callSuccessfully(.ping), .empty)
        let third = try daemon.connect()
        try third.handshake()
        for name in ["f", "g", "h"] {
            XCTAssertNil(try third.call(.create(path: "/\(name)", data: [], mode: .persistent)).result.failureCode)
        }
    }

    /// Data bytes of the nodes a session created: creates and growing sets are refused past the quota.
    func testDataBytesPerSessionQuota() throws {
        let daemon = try startDaemon(["--data-bytes-per-session-max", "1048576"])
        let client = try daemon.connect()
        try client.handshake()
        let chunk = [UInt8](repeating: 1, count: 400_000)
        XCTAssertNil(try client.call(.create(path: "/a", data: chunk, mode: .persistent)).result.failureCode)
        XCTAssertNil(try client.call(.create(path: "/b", data: chunk, mode: .persistent)).result.failureCode)
        XCTAssertTrue(quotaError(try client.call(.create(path: "/c", data: chunk, mode: .persistent))).contains("dataBytesPerSessionMax"))
        XCTAssertTrue(quotaError(try client.call(.set(path: "/a", data: chunk + chunk, expectedVersion: -1))).contains("dataBytesPerSessionMax"))
        XCTAssertNil(try client.call(.set(path: "/a", data: [1], expectedVersion: -1)).result.failureCode, "shrinking is allowed")
        XCTAssertNil(try client.call(.create(path: "/c", data: chunk, mode: .persistent)).result.failureCode)
    }

    /// Sessions per peer identity: the Unix uid and the TCP address count apart.
    func testSessionsPerPeerQuota() throws {
        let daemon = try startDaemon(["--sessions-per-peer-max", "2"])
        var locals: [RawConnection] = []
        for _ in 0..<2 {
            let local = try daemon.connect()
            try local.handshake()
            locals.append(local)
        }
        let third = try daemon.connect()
        try third.hello()
        XCTAssertTrue(quotaError(try third.call(.openSession(timeoutMilliseconds: 0, flags: []))).contains("sessionsPerPeerMax"))
        // Another identity (TCP 127.0.0.1) has its own count.
        let remote = try daemon.connectTCP()
        try remote.handshake()
        // An ended session frees its place.
        XCTAssertNil(try locals[0].call(.closeSession).result.failureCode)
        guard case .session = try third.callSuccessfully(.openSession(timeoutMilliseconds: 0, flags: [])) else {
            return XCTFail("a session after one was closed")
        }
    }

    /// Watches of one session (`tooManyWatches`), now a flag.
    func testWatchesPerSessionQuota() throws {
        let daemon = try startDaemon(["--watches-per-session-max", "2"])
        let client = try daemon.connect()
        try client.handshake()
        XCTAssertNil(try client.call(.exists(path: "/a", watch: true)).result.failureCode)
        XCTAssertNil(try client.call(.exists(path: "/b", watch: true)).result.failureCode)
        XCTAssertEqual(try client.call(.exists(path: "/c", watch: true)).result.failureCode, .tooManyWatches)
    }

    // MARK: The contract

    /// PROTOCOL.md §8.1 lists every admission rule with `AdmissionConfiguration`'s default.
    func testAdmissionTableMatchesTheDefaults() throws {
        let text = try String(contentsOf: GoldenVectors.packageRoot.appendingPathComponent("Proto/PROTOCOL.md"), encoding: .utf8)
        let lines = text.split(separator: "\n").drop { !$0.hasPrefix("### 8.1 ") }.dropFirst().prefix { !$0.hasPrefix("#") }
        var documented: [String: String] = [:]
        for line in lines where line.hasPrefix("| ") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 2, let flag = cells[0].firstMatch(of: /--[a-z-]+/) else { continue }
            documented[String(flag.output)] = cells[1]
        }
        let defaults = AdmissionConfiguration()
        XCTAssertEqual(documented, [
            "--hello-timeout-ms": "\(defaults.helloMilliseconds)",
            "--authenticate-timeout-ms": "\(defaults.authenticateMilliseconds)",
            "--unauthenticated-frame-bytes": "\(defaults.unauthenticatedFrameBytesMax)",
            "--unauthenticated-connections-max": "\(defaults.unauthenticatedConnectionsMax)",
            "--partial-frame-timeout-ms": "\(defaults.partialFrameMilliseconds)",
            "--idle-timeout-ms": "\(defaults.idleMilliseconds)",
            "--input-budget-bytes": "\(defaults.inputBytesBufferedMax)",
            "--output-budget-bytes": "\(defaults.outputBytesBufferedMax)",
            "--login-failures-before-throttle": "\(defaults.loginFailuresBeforeThrottle), \(defaults.loginThrottleMilliseconds)",
        ])
    }

    // MARK: Failed logins

    /// Wrong tokens are logged; after `--login-failures-before-throttle` of them from one address, new
    /// TCP connections from it get `loginThrottled` and close. Unix clients are not affected.
    func testWrongTokenStormIsThrottledAndLogged() throws {
        let daemon = try startDaemon(["--login-failures-before-throttle", "4", "--login-throttle-ms", "60000"])
        let port = try XCTUnwrap(daemon.tcpPort)
        let wrong = Array("wrong-wrong-wrong-wrong-wrong".utf8)
        for _ in 0..<2 {
            let guesser = try RawConnection(port: port)
            try guesser.hello()
            for _ in 0..<2 {
                XCTAssertEqual(try guesser.call(.authenticate(token: wrong)).result.failureCode, .notAuthorized)
            }
        }
        let refused = try RawConnection(port: port)
        let error = try closingError(refused)
        XCTAssertEqual(error?.code, .loginThrottled)
        XCTAssertTrue(error?.message.contains("retry in") == true, "\(String(describing: error))")
        // Even with the right token: the address is refused on accept.
        let rightful = try RawConnection(port: port)
        XCTAssertEqual(try closingError(rightful)?.code, .loginThrottled)

        let local = try daemon.connect()
        try local.handshake()
        XCTAssertEqual(try local.callSuccessfully(.ping), .empty)
        let log = daemon.standardError
        XCTAssertEqual(log.components(separatedBy: "authentication failed").count - 1, 4, log)
        XCTAssertTrue(log.contains("throttled_milliseconds"), log)
    }
}

fileprivate extension Result where Success == ReplyBody, Failure == ReplyError {
    var failureCode: ErrorCode? {
        if case .failure(let error) = self { return error.code }
        return nil
    }
}
