import Foundation
import Glibc
import BatonProtocol
@testable import BatonClient

/// The server end of a socketpair that speaks the codec: it decodes every request the client sends and
/// hands it to `respond`, which may reply (or not, or later). Lets the client be tested with no daemon.
final class FakePeer: @unchecked Sendable {
    typealias Responder = @Sendable (FakePeer, UInt32, Request) -> Void

    let serverDescriptor: Int32
    let clientDescriptor: Int32
    private let condition = NSCondition()
    private var received: [(requestID: UInt32, request: Request)] = []
    private var responder: Responder
    private var closed = false
    /// Answer `resumeSession` by passing it to the responder instead of resuming session 42. Set
    /// at init: the peer's thread reads it from the start.
    let refusesResume: Bool

    /// A peer that answers hello and openSession itself and passes everything else to `respond`.
    init(respond: @escaping Responder = { _, _, _ in }) {
        var descriptors: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &descriptors) == 0)
        clientDescriptor = descriptors[0]
        serverDescriptor = descriptors[1]
        responder = respond
        refusesResume = false
        let thread = Thread { [self] in readLoop() }
        thread.start()
    }

    /// A peer on a connection a `FakeListener` accepted (the client end is the client's own socket).
    init(accepted descriptor: Int32, refusesResume: Bool = false, respond: @escaping Responder) {
        serverDescriptor = descriptor
        clientDescriptor = -1
        responder = respond
        self.refusesResume = refusesResume
        let thread = Thread { [self] in readLoop() }
        thread.start()
    }

    func setResponder(_ respond: @escaping Responder) {
        condition.lock()
        responder = respond
        condition.unlock()
    }

    /// Opens a client over the pair (handshake included).
    func client(options: ClientOptions = ClientOptions()) async throws -> BatonClient {
        let connection = try ClientConnection(descriptor: clientDescriptor)
        return try await BatonClient.open(on: connection, endpoint: .unix(path: "fake"), options: options)
    }

    func send(_ message: ServerMessage) {
        let bytes = Codec.encode(message)
        condition.lock()
        defer { condition.unlock() }
        guard !closed else { return }
        _ = Socket.sendAll(serverDescriptor, bytes)
    }

    func reply(_ requestID: UInt32, _ opcode: Opcode, _ body: ReplyBody) {
        send(.reply(Reply(requestID: requestID, opcode: opcode, result: .success(body))))
    }

    func fail(_ requestID: UInt32, _ opcode: Opcode, _ code: ErrorCode, _ message: String = "") {
        send(.reply(Reply(requestID: requestID, opcode: opcode, result: .failure(ReplyError(code, message)))))
    }

    func sendRaw(_ bytes: [UInt8]) {
        condition.lock()
        defer { condition.unlock() }
        _ = Socket.sendAll(serverDescriptor, bytes)
    }

    /// Closes the server end: the client sees EOF.
    func close() {
        condition.lock()
        defer { condition.unlock() }
        guard !closed else { return }
        closed = true
        shutdown(serverDescriptor, Int32(SHUT_RDWR))
    }

    var requests: [(requestID: UInt32, request: Request)] {
        condition.lock()
        defer { condition.unlock() }
        return received
    }

    /// Waits until `predicate` holds for the requests received so far (or 20 s pass, then returns false).
    @discardableResult
    func waitFor(_ predicate: ([(requestID: UInt32, request: Request)]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(20)
        condition.lock()
        defer { condition.unlock() }
        while !predicate(received) {
            if !condition.wait(until: deadline) { return predicate(received) }
        }
        return true
    }

    private func readLoop() {
        var accumulator = FrameAccumulator()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(serverDescriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            accumulator.append(buffer[0..<count])
            while let body = try? accumulator.nextBody(), let (requestID, request) = try? Codec.decodeRequest(body) {
                condition.lock()
                received.append((requestID, request))
                let respond = responder
                condition.broadcast()
                condition.unlock()
                switch request {
                case .hello:
                    reply(requestID, .hello, .hello(version: ProtocolVersion.current, serverName: "fake", frameBytesMax: 1 << 20))
                case .openSession(let timeout, _):
                    reply(requestID, .openSession, .session(sessionID: 42, secret: SessionSecret(high: 1, low: 2),
                                                            timeoutMilliseconds: timeout))
                case .resumeSession(let sessionID, _) where sessionID == 42 && !refusesResume:
                    reply(requestID, .resumeSession, .resumed(timeoutMilliseconds: 1_000))
                default:
                    respond(self, requestID, request)
                }
            }
        }
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
        Glibc.close(serverDescriptor)
    }
}

/// A Unix socket that accepts connections and gives each to a new `FakePeer` (whose responder
/// `respond` makes), so a client that reconnects finds a peer again.
final class FakeListener: @unchecked Sendable {
    let path: String
    private let descriptor: Int32
    private let condition = NSCondition()
    private var accepted: [FakePeer] = []
    private let makePeer: @Sendable (Int32) -> FakePeer

    init(makePeer: @escaping @Sendable (Int32) -> FakePeer = { FakePeer(accepted: $0, respond: { _, _, _ in }) }) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-fake-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        path = directory.appendingPathComponent("s").path
        self.makePeer = makePeer
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        precondition(descriptor >= 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        precondition(bound == 0 && listen(descriptor, 8) == 0)
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    var endpoint: Endpoint { .unix(path: path) }

    /// The peers accepted so far, in order.
    var peers: [FakePeer] {
        condition.lock()
        defer { condition.unlock() }
        return accepted
    }

    /// Waits until `count` connections were accepted (20 s at most); returns the last one.
    func waitForPeer(_ count: Int) -> FakePeer? {
        let deadline = Date().addingTimeInterval(20)
        condition.lock()
        defer { condition.unlock() }
        while accepted.count < count {
            if !condition.wait(until: deadline) { break }
        }
        return accepted.count >= count ? accepted[count - 1] : nil
    }

    /// Stops accepting: the socket file goes, so new connects fail.
    func stop() {
        unlink(path)
        shutdown(descriptor, Int32(SHUT_RDWR))
    }

    private func acceptLoop() {
        while true {
            let connection = accept(descriptor, nil, nil)
            if connection < 0 {
                if errno == EINTR { continue }
                break
            }
            let peer = makePeer(connection)
            condition.lock()
            accepted.append(peer)
            condition.broadcast()
            condition.unlock()
        }
        Glibc.close(descriptor)
    }
}

extension Stat {
    /// A recognisable stat for fake replies.
    static func sample(version: Int32) -> Stat {
        var stat = Stat()
        stat.version = version
        stat.createdTransaction = 7
        stat.dataLength = 3
        return stat
    }
}
