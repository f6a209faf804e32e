#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import BatonEngine
import BatonProtocol
import Logging

/// The admission rules (PROTOCOL.md §8, "Admission"), all configurable (`batond --help`).
public struct AdmissionConfiguration: Sendable {
    /// A connection must complete `hello` this long after it was accepted.
    public var helloMilliseconds: UInt64 = 10_000
    /// A TCP connection must complete `authenticate` this long after it was accepted.
    public var authenticateMilliseconds: UInt64 = 10_000
    /// Largest frame body before the connection is authenticated (TCP until `authenticate`
    /// succeeds; Unix connections are authenticated by the socket's permissions). Must fit `hello`
    /// and `authenticate` with the longest token.
    public var unauthenticatedFrameBytesMax: Int = 8_192
    /// TCP connections not (yet) authenticated; more are refused with `tooManyConnections`. Kept
    /// well below `connectionsMax`, so strangers never take the slots of local clients.
    public var unauthenticatedConnectionsMax: Int = 256
    /// A frame begun must be complete this long after its first byte (or after the frame before it).
    public var partialFrameMilliseconds: UInt64 = 30_000
    /// A connection that sends nothing this long is closed. Longer than any session timeout, so a
    /// connection whose session is alive is never idle this long.
    public var idleMilliseconds: UInt64 = 900_000
    /// Undecoded input held by all connections together; a read that would go over closes its connection.
    public var inputBytesBufferedMax: Int = 256 * 1_048_576
    /// Output queued to all connections together; the connection whose output would go over is dropped.
    public var outputBytesBufferedMax: Int = 1_024 * 1_048_576
    /// Failed `authenticate` from one TCP peer address before new connections from it are refused...
    public var loginFailuresBeforeThrottle: Int = 10
    /// ...for this long, doubled with every further failure up to `loginThrottleMillisecondsMax`.
    public var loginThrottleMilliseconds: UInt64 = 1_000
    public var loginThrottleMillisecondsMax: UInt64 = 60_000

    public init() {}

    /// What is wrong with these settings (the relations that must hold), nil if nothing: `batond`
    /// refuses to start with it, the loop asserts it.
    public func problem(limits: Limits, tokenBytes: Int) -> String? {
        if unauthenticatedFrameBytesMax > limits.frameBytesMax { return "the unauthenticated frame limit is over frameBytesMax" }
        if unauthenticatedFrameBytesMax < max(256, limits.clientNameBytesMax + 32, tokenBytes + 32) {
            return "the unauthenticated frame limit must fit hello and authenticate (at least \(max(256, limits.clientNameBytesMax + 32, tokenBytes + 32)) bytes)"
        }
        if unauthenticatedConnectionsMax <= 0 || unauthenticatedConnectionsMax > limits.connectionsMax {
            return "the unauthenticated connection budget must be positive and at most connectionsMax (\(limits.connectionsMax))"
        }
        if helloMilliseconds == 0 || authenticateMilliseconds == 0 || partialFrameMilliseconds == 0 {
            return "the hello, authenticate and partial-frame deadlines must be positive"
        }
        if idleMilliseconds <= UInt64(limits.sessionTimeoutMillisecondsMax) {
            return "the idle deadline must be longer than the longest session timeout (\(limits.sessionTimeoutMillisecondsMax) ms)"
        }
        if inputBytesBufferedMax < limits.frameBytesMax { return "the input budget must hold one whole frame (\(limits.frameBytesMax) bytes)" }
        if outputBytesBufferedMax < limits.outputBytesPerConnectionMax {
            return "the output budget must hold one client's output (\(limits.outputBytesPerConnectionMax) bytes)"
        }
        if loginFailuresBeforeThrottle <= 0 || loginThrottleMilliseconds == 0 || loginThrottleMillisecondsMax < loginThrottleMilliseconds {
            return "login throttling needs a positive failure count and delay, and a longest delay no shorter than the first"
        }
        return nil
    }
}

/// Per-connection admission state, kept in `Connection.admission`.
/// Fields ordered widest first (64 bytes instead of 72 in every `Connection`).
struct AdmissionTicket {
    let acceptedMilliseconds: UInt64
    /// TCP peer address without the port (the identity failed logins are counted by); nil for Unix.
    let peerHost: String?
    var lastInputMilliseconds: UInt64
    /// Bytes of `input` counted in `Admission.inputBytesBuffered`.
    var inputBytesCounted = 0
    /// Bytes of queued output counted in `Admission.outputBytesBuffered`.
    var outputBytesCounted = 0
    /// When the frame now partly in `input` was begun (or the frame before it completed); nil without one.
    var partialFrameSinceMilliseconds: UInt64?
    var isGreeted = false
    /// Unix from the start; TCP once `authenticate` succeeded.
    var isAuthenticated: Bool
}

/// Who may connect, what an unproven connection may cost, and how long it may take: the admission
/// rules in one place. `ServerLoop` tells it what happens (accept, input, replies, close) and asks it
/// what to do; it knows no sockets and no clock (times are monotonic milliseconds passed in).
/// Its refusals and deadline closes are error frames, counted in metrics by code like every error
/// (`baton_errors_total{code="deadlineExceeded"}`, `loginThrottled`, `tooManyConnections`).
final class Admission {
    let configuration: AdmissionConfiguration
    let frameBytesMax: Int
    private let logger: Logger

    /// TCP connections accepted and not authenticated yet.
    private(set) var unauthenticatedConnections = 0
    /// Connections with a handshake deadline (no `hello` yet, or TCP not authenticated).
    private var handshaking: [ConnectionID: Connection] = [:]
    /// Connections holding part of a frame.
    private var partialFrames: [ConnectionID: Connection] = [:]
    /// Every admitted open connection, for the idle sweep.
    private var admitted: [ConnectionID: Connection] = [:]
    private(set) var inputBytesBuffered = 0
    private(set) var outputBytesBuffered = 0
    private var lastSweepMilliseconds: UInt64 = 0
    private var lastIdleSweepMilliseconds: UInt64 = 0

    /// Failed logins by TCP peer (`loginIdentity(ofPeerHost:)`: an IPv4 address, an IPv6 /64). Entries
    /// go once their throttle has passed and a quiet period followed, so the table holds only peers
    /// that failed lately.
    private var loginFailures: [String: LoginFailures] = [:]
    private struct LoginFailures {
        var count = 0
        var throttledUntilMilliseconds: UInt64 = 0
        var lastFailureMilliseconds: UInt64 = 0
    }

    init(configuration: AdmissionConfiguration, frameBytesMax: Int, logger: Logger) {
        self.configuration = configuration
        self.frameBytesMax = frameBytesMax
        self.logger = logger
        let shortest = min(configuration.helloMilliseconds, configuration.authenticateMilliseconds,
                           configuration.partialFrameMilliseconds)
        sweepMilliseconds = min(1_000, max(10, shortest / 10))
    }

    // MARK: Accept

    /// Why a new connection is refused (sent unattributed before it closes), or nil to take it.
    func refusal(transport: TransportKind, peerHost: String?, now: UInt64) -> ReplyError? {
        guard transport == .tcp else { return nil }
        if let host = peerHost.map(Admission.loginIdentity(ofPeerHost:)), let failures = loginFailures[host],
           failures.throttledUntilMilliseconds > now {
            return ReplyError(.loginThrottled, "\(failures.count) failed logins from \(host); retry in \(failures.throttledUntilMilliseconds - now) ms")
        }
        if unauthenticatedConnections >= configuration.unauthenticatedConnectionsMax {
            return ReplyError(.tooManyConnections, "at most \(configuration.unauthenticatedConnectionsMax) unauthenticated TCP connections")
        }
        return nil
    }

    /// The connection was taken: its deadlines start now.
    func admit(_ connection: Connection, peerHost: String?, now: UInt64) {
        let authenticated = connection.transport == .unix
        connection.admission = AdmissionTicket(acceptedMilliseconds: now, peerHost: peerHost,
                                               lastInputMilliseconds: now, isAuthenticated: authenticated)
        if !authenticated { unauthenticatedConnections += 1 }
        handshaking[connection.id] = connection
        admitted[connection.id] = connection
    }

    /// Largest frame body the connection may send now.
    func frameBytesMax(for connection: Connection) -> Int {
        connection.admission?.isAuthenticated == false ? configuration.unauthenticatedFrameBytesMax : frameBytesMax
    }

    /// The connection is closing (draining or closed): it leaves every count.
    func release(_ connection: Connection) {
        guard let ticket = connection.admission else { return }
        connection.admission = nil
        if !ticket.isAuthenticated { unauthenticatedConnections -= 1 }
        inputBytesBuffered -= ticket.inputBytesCounted
        outputBytesBuffered -= ticket.outputBytesCounted
        handshaking[connection.id] = nil
        partialFrames[connection.id] = nil
        admitted[connection.id] = nil
    }

    // MARK: What the connection does

    /// A reply on its way: a successful `hello` or `authenticate` moves the connection on; a failed
    /// `authenticate` counts against its peer.
    func observe(_ reply: Reply, on connection: Connection, now: UInt64) {
        // Every reply passes here: only the two handshake opcodes matter.
        guard reply.opcode == .hello || reply.opcode == .authenticate, var ticket = connection.admission else { return }
        switch (reply.opcode, reply.result) {
        case (.hello, .success):
            ticket.isGreeted = true
        case (.authenticate, .success):
            if !ticket.isAuthenticated {
                ticket.isAuthenticated = true
                unauthenticatedConnections -= 1
            }
        case (.authenticate, .failure(let error)) where error.code == .notAuthorized:
            loginFailed(peerHost: ticket.peerHost, now: now,
                        details: ["connection": "\(connection.id)", "peer": "\(connection.peer)"])
        default:
            return
        }
        if ticket.isGreeted && ticket.isAuthenticated { handshaking[connection.id] = nil }
        connection.admission = ticket
    }

    /// Addresses whose failed logins are remembered at once. Past it the quiet ones are forgotten
    /// first; if none is, a new address is not recorded (the table stays bounded; its failures are
    /// still logged and still close the connection after the third).
    static let loginFailureAddressesMax = 65_536

    /// The identity failed logins are counted by, from a TCP peer host as `Listener.host(ofPeer:)` gives
    /// it: an IPv4 address as it is; an IPv6 address by its /64 prefix ("2001:db8:1:2::/64"), since a
    /// single host commonly has a whole /64 and could rotate through its addresses to dodge the
    /// throttle. An IPv4-mapped IPv6 address is the IPv4 host it maps; text that is no address stays as is.
    static func loginIdentity(ofPeerHost peerHost: String) -> String {
        let host = peerHost.hasPrefix("[") && peerHost.hasSuffix("]") ? String(peerHost.dropFirst().dropLast()) : peerHost
        var address = in6_addr()
        guard host.contains(":"), inet_pton(AF_INET6, host, &address) == 1 else { return peerHost }
        var bytes = withUnsafeBytes(of: address) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            return bytes[12...].map(String.init).joined(separator: ".")
        }
        for index in 8..<16 { bytes[index] = 0 }
        withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes) }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &address, &text, socklen_t(text.count)) != nil else { return peerHost }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/64"
    }

    /// A failed `authenticate` from `peerHost` (nil on Unix: not counted); `details` name the connection in the log.
    func loginFailed(peerHost: String?, now: UInt64, details: Logger.Metadata) {
        guard let peerHost else { return }
        let host = Admission.loginIdentity(ofPeerHost: peerHost)
        if loginFailures[host] == nil && loginFailures.count >= Admission.loginFailureAddressesMax { forgetQuietPeers(now: now) }
        var failures = loginFailures[host] ?? LoginFailures()
        failures.count += 1
        failures.lastFailureMilliseconds = now
        var details = details
        details["failures"] = "\(failures.count)"
        let over = failures.count - configuration.loginFailuresBeforeThrottle
        if over >= 0 {
            let delay = min(configuration.loginThrottleMillisecondsMax,
                            configuration.loginThrottleMilliseconds << UInt64(min(over, 20)))
            failures.throttledUntilMilliseconds = now + delay
            details["throttled_milliseconds"] = "\(delay)"
        }
        if loginFailures[host] != nil || loginFailures.count < Admission.loginFailureAddressesMax { loginFailures[host] = failures }
        logger.warning("authentication failed", metadata: details)
    }

    /// Bytes arrived; `held` is what the connection keeps undecoded now, `completedFrame` whether a
    /// frame was completed by them. Returns false when the input budget cannot hold them.
    func inputHeld(by connection: Connection, bytes held: Int, completedFrame: Bool, waitsForBytes: Bool, now: UInt64) -> Bool {
        guard connection.admission != nil else { return true }
        if held == 0 && connection.admission!.inputBytesCounted == 0 && connection.admission!.partialFrameSinceMilliseconds == nil {
            // The common case (whole frames, all decoded): nothing held before or now, no count changes.
            connection.admission!.lastInputMilliseconds = now
            return true
        }
        var ticket = connection.admission!
        ticket.lastInputMilliseconds = now
        inputBytesBuffered += held - ticket.inputBytesCounted
        ticket.inputBytesCounted = held
        if held > 0 && waitsForBytes {
            if completedFrame || ticket.partialFrameSinceMilliseconds == nil {
                ticket.partialFrameSinceMilliseconds = now
            }
            partialFrames[connection.id] = connection
        } else {
            ticket.partialFrameSinceMilliseconds = nil
            partialFrames[connection.id] = nil
        }
        connection.admission = ticket
        return inputBytesBuffered <= configuration.inputBytesBufferedMax
    }

    /// The connection's queued output is now `queued` bytes. Returns false when the output budget
    /// cannot hold them.
    func outputQueued(on connection: Connection, bytes queued: Int) -> Bool {
        guard let counted = connection.admission?.outputBytesCounted else { return true }
        guard queued != counted else { return outputBytesBuffered <= configuration.outputBytesBufferedMax }
        outputBytesBuffered += queued - counted
        connection.admission!.outputBytesCounted = queued
        return outputBytesBuffered <= configuration.outputBytesBufferedMax
    }

    // MARK: Deadlines

    /// How often the deadlines are looked at while some connection has one: a tenth of the shortest,
    /// between 10 ms and 1 s (a deadline is enforced that much late at most).
    private let sweepMilliseconds: UInt64

    /// When the timer should next run the sweep, nil with nothing to watch.
    var nextSweepMilliseconds: UInt64? {
        var next: UInt64?
        if !handshaking.isEmpty || !partialFrames.isEmpty { next = lastSweepMilliseconds + sweepMilliseconds }
        if !admitted.isEmpty {
            let idle = lastIdleSweepMilliseconds + configuration.idleMilliseconds / 8
            next = min(next ?? .max, idle)
        }
        return next
    }

    /// Connections past a deadline, with the error they are closed with. They stay in the counts until
    /// the loop releases them.
    func expired(now: UInt64) -> [(Connection, ReplyError)] {
        var expired: [(Connection, ReplyError)] = []
        var named = Set<ConnectionID>()
        if now >= lastSweepMilliseconds + sweepMilliseconds {
            lastSweepMilliseconds = now
            for connection in handshaking.values {
                guard let ticket = connection.admission else { continue }
                let age = now - min(now, ticket.acceptedMilliseconds)
                if !ticket.isGreeted && age >= configuration.helloMilliseconds {
                    expired.append((connection, ReplyError(.deadlineExceeded, "no hello within \(configuration.helloMilliseconds) ms")))
                    named.insert(connection.id)
                } else if !ticket.isAuthenticated && age >= configuration.authenticateMilliseconds {
                    expired.append((connection, ReplyError(.deadlineExceeded, "no authenticate within \(configuration.authenticateMilliseconds) ms")))
                    named.insert(connection.id)
                }
            }
            for connection in partialFrames.values where !named.contains(connection.id) {
                guard let since = connection.admission?.partialFrameSinceMilliseconds else { continue }
                if now >= since + configuration.partialFrameMilliseconds {
                    named.insert(connection.id)
                    expired.append((connection, ReplyError(.deadlineExceeded, "a frame begun was not completed within \(configuration.partialFrameMilliseconds) ms")))
                }
            }
        }
        if now >= lastIdleSweepMilliseconds + configuration.idleMilliseconds / 8 {
            lastIdleSweepMilliseconds = now
            for connection in admitted.values {
                guard let ticket = connection.admission, now >= ticket.lastInputMilliseconds + configuration.idleMilliseconds,
                      !named.contains(connection.id) else { continue }
                expired.append((connection, ReplyError(.deadlineExceeded, "nothing received for \(configuration.idleMilliseconds) ms")))
            }
        }
        forgetQuietPeers(now: now)
        return expired
    }

    /// Drops failed-login records of peers whose throttle has passed and that stayed quiet since.
    private func forgetQuietPeers(now: UInt64) {
        guard !loginFailures.isEmpty else { return }
        let quiet = configuration.loginThrottleMillisecondsMax * 2
        loginFailures = loginFailures.filter { _, failures in
            now < max(failures.throttledUntilMilliseconds, failures.lastFailureMilliseconds) + quiet
        }
    }
}
