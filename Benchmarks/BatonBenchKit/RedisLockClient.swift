import CHiredis
#if canImport(Glibc)
import Glibc
#endif

/// The Redis lock recipe its users use: `SET key token NX PX ttl` to acquire, retried after a short
/// sleep while the key is taken; release is a compare-and-delete Lua script called with EVALSHA.
public final class RedisLockClient: LockClient {
    let context: UnsafeMutablePointer<redisContext>
    let ttlText: String
    let backoffMicroseconds: UInt64
    let tokenPrefix: String
    var tokenCounter = 0
    var scriptSHA = ""
    public private(set) var wakeups = 0

    static let releaseScript = """
        if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end
        """

    public init(host: String, port: UInt16, ttlMilliseconds: UInt32, backoffMicroseconds: UInt64) throws(BenchError) {
        guard let context = redisConnect(host, Int32(port)) else { throw BenchError("redis: cannot allocate a context") }
        if context.pointee.err != 0 {
            let text = withUnsafePointer(to: &context.pointee.errstr) { $0.withMemoryRebound(to: CChar.self, capacity: 128) { String(cString: $0) } }
            redisFree(context)
            throw BenchError("redis connect \(host):\(port): \(text)")
        }
        var one: Int32 = 1
        setsockopt(context.pointee.fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        self.context = context
        self.ttlText = String(ttlMilliseconds)
        self.backoffMicroseconds = backoffMicroseconds
        self.tokenPrefix = "\(getpid())-\(UInt64.random(in: 0...UInt64.max))-"
        guard case .string(let sha) = try command(["SCRIPT", "LOAD", Self.releaseScript]) else {
            throw BenchError("redis: SCRIPT LOAD did not return a digest")
        }
        scriptSHA = sha
    }

    deinit { redisFree(context) }

    public enum Value: Equatable {
        case string(String)
        case integer(Int)
        case status(String)
        case null
        case array(Int)
    }

    /// One command, one reply (hiredis's argv form: no formatting, binary safe).
    public func command(_ arguments: [String]) throws(BenchError) -> Value {
        let utf8 = arguments.map { Array($0.utf8CString) }
        let reply: UnsafeMutableRawPointer? = utf8.withUnsafeBufferPointers { pointers, lengths in
            redisCommandArgv(context, Int32(arguments.count), pointers, lengths)
        }
        guard let reply else { throw BenchError("redis \(arguments[0]): connection error \(context.pointee.err)") }
        defer { freeReplyObject(reply) }
        let value = reply.assumingMemoryBound(to: redisReply.self).pointee
        switch value.type {
        case REDIS_REPLY_STRING: return .string(String(cString: value.str))
        case REDIS_REPLY_STATUS: return .status(String(cString: value.str))
        case REDIS_REPLY_INTEGER: return .integer(Int(value.integer))
        case REDIS_REPLY_NIL: return .null
        case REDIS_REPLY_ARRAY: return .array(Int(value.elements))
        case REDIS_REPLY_ERROR: throw BenchError("redis \(arguments[0]): \(String(cString: value.str))")
        default: throw BenchError("redis: unknown reply type \(value.type)")
        }
    }

    public func acquire(_ lock: String) throws(BenchError) -> String {
        tokenCounter += 1
        let token = tokenPrefix + String(tokenCounter)
        while true {
            if case .status = try command(["SET", lock, token, "NX", "PX", ttlText]) { return token }
            wakeups += 1
            MonotonicClock.sleep(microseconds: backoffMicroseconds)
        }
    }

    public func release(_ lock: String, hold: String) throws(BenchError) {
        guard case .integer(let deleted) = try command(["EVALSHA", scriptSHA, "1", lock, hold]) else {
            throw BenchError("redis: EVALSHA did not return an integer")
        }
        guard deleted == 1 else { throw BenchError("redis: release found the lock \(lock) no longer ours (TTL expired?)") }
    }
}

extension Array where Element == [CChar] {
    /// C argv and lengths for the lifetime of `body`.
    func withUnsafeBufferPointers<Result>(_ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> Result) -> Result {
        var pointers: [UnsafePointer<CChar>?] = []
        var lengths: [Int] = []
        var storage: [UnsafeMutablePointer<CChar>] = []
        for element in self {
            let copy = UnsafeMutablePointer<CChar>.allocate(capacity: element.count)
            copy.initialize(from: element, count: element.count)
            storage.append(copy)
            pointers.append(UnsafePointer(copy))
            lengths.append(element.count - 1)
        }
        defer { for copy in storage { copy.deallocate() } }
        return pointers.withUnsafeMutableBufferPointer { argv in
            lengths.withUnsafeBufferPointer { body(argv.baseAddress!, $0.baseAddress!) }
        }
    }
}

extension RedisLockClient {
    /// Sends all commands, then reads all replies (Redis pipelining).
    public func pipeline(_ commands: [[String]]) throws(BenchError) {
        for arguments in commands {
            let utf8 = arguments.map { Array($0.utf8CString) }
            let code = utf8.withUnsafeBufferPointers { pointers, lengths in
                redisAppendCommandArgv(context, Int32(arguments.count), pointers, lengths)
            }
            guard code == REDIS_OK else { throw BenchError("redis: cannot queue \(arguments[0])") }
        }
        for _ in commands {
            var reply: UnsafeMutableRawPointer?
            guard redisGetReply(context, &reply) == REDIS_OK, let reply else { throw BenchError("redis: pipeline read failed") }
            let type = reply.assumingMemoryBound(to: redisReply.self).pointee.type
            freeReplyObject(reply)
            guard type != REDIS_REPLY_ERROR else { throw BenchError("redis: pipelined command failed") }
        }
    }
}
