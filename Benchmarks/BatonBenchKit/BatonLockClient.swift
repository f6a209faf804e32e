import BatonClient
import BatonProtocol
import Foundation

/// Talks to `batond` with the protocol codec over one blocking socket: acquire is one request
/// (`Request.acquire`, replied when granted), release is one request (`Request.release(node, token)`).
/// A hold is written `<node>@<token>` (`hold(node:token:)`): a release names the grant by both.
public final class BatonLockClient: LockClient {
    public let socket: BlockingSocket
    var nextRequestID: UInt32 = 1
    public private(set) var sessionID: UInt64 = 0
    public var wakeups: Int { 0 }
    /// Frames received, replies and events: the herd scenario counts them.
    public private(set) var framesReceived = 0

    public init(endpoint: Endpoint, sessionTimeoutMilliseconds: UInt32, clientName: String,
                flags: SessionFlags = [], bufferBytes: Int = 65_536) throws(BenchError) {
        socket = try BlockingSocket.connect(endpoint, bufferBytes: bufferBytes)
        _ = try call(.hello(version: ProtocolVersion.current, clientName: clientName))
        // Over TCP batond asks for its token: read from $BATON_TCP_TOKEN_FILE, as the CLI does.
        if case .tcp = endpoint, let path = ProcessInfo.processInfo.environment[TCPToken.fileEnvironmentVariable] {
            let token: [UInt8]
            do { token = try TCPToken.read(fromFile: path) } catch { throw BenchError("batond TCP token: \(error)") }
            _ = try call(.authenticate(token: token))
        }
        guard case .session(let id, _, _) = try call(.openSession(timeoutMilliseconds: sessionTimeoutMilliseconds, flags: flags)) else {
            throw BenchError("batond: openSession did not return a session")
        }
        sessionID = id
    }

    /// Sends one request without waiting; returns its id.
    @discardableResult
    public func send(_ request: Request) throws(BenchError) -> UInt32 {
        let requestID = nextRequestID
        nextRequestID &+= 1
        try socket.send(Codec.encodeRequest(request, requestID: requestID))
        return requestID
    }

    /// Sends several requests in one write (pipelining); returns the first id.
    public func sendBatch(_ requests: [Request]) throws(BenchError) -> UInt32 {
        let first = nextRequestID
        var writer = WireWriter(capacity: requests.count * 48)
        for request in requests {
            Codec.encodeRequest(request, requestID: nextRequestID, into: &writer)
            nextRequestID &+= 1
        }
        try socket.send(writer.bytes)
        return first
    }

    /// The next reply (events are counted and skipped).
    public func receiveReply() throws(BenchError) -> Reply {
        while true {
            let body = try socket.readFrame()
            framesReceived += 1
            let message: ServerMessage
            do {
                message = try Codec.decodeServerMessage(socket.buffer, from: body.lowerBound, to: body.upperBound)
            } catch {
                throw BenchError("batond sent an undecodable frame: \(error)")
            }
            if case .reply(let reply) = message { return reply }
        }
    }

    public func call(_ request: Request) throws(BenchError) -> ReplyBody {
        let requestID = try send(request)
        let reply = try receiveReply()
        guard reply.requestID == requestID else {
            throw BenchError("batond replied to request \(reply.requestID), expected \(requestID)")
        }
        switch reply.result {
        case .success(let body): return body
        case .failure(let error): throw BenchError("batond \(request.opcode): \(error)")
        }
    }

    public func acquire(_ lock: String) throws(BenchError) -> String {
        guard case .granted(let node, let token) = try call(.acquire(LockRequest(path: lock))) else {
            throw BenchError("batond: acquire did not return a grant")
        }
        return Self.hold(node: node, token: token)
    }

    public func release(_ lock: String, hold: String) throws(BenchError) {
        _ = try call(Self.releaseRequest(hold: hold))
    }

    /// What `acquire` returns for a grant.
    public static func hold(node: String, token: UInt64) -> String { "\(node)@\(token)" }

    /// The release of a hold written by `hold(node:token:)`.
    public static func releaseRequest(hold: String) -> Request {
        guard let at = hold.lastIndex(of: "@"), let token = UInt64(hold[hold.index(after: at)...]) else {
            preconditionFailure("not a hold of BatonLockClient: \(hold)")
        }
        return .release(node: String(hold[..<at]), token: token)
    }
}
