/// Encoding and decoding of whole frames. A frame is `u32 bodyLength` then the body:
///   client -> server: `u8 opcode, u32 requestID, fields`
///   server -> client: `u8 kind(1 reply | 2 event), ...` (Proto/PROTOCOL.md)
public enum Codec {
    // MARK: Requests (client -> server)

    public static func encodeRequest(_ request: Request, requestID: UInt32, into writer: inout WireWriter) {
        let start = writer.beginFrame()
        writer.u8(request.opcode.rawValue)
        writer.u32(requestID)
        switch request {
        case .hello(let version, let clientName):
            writer.u32(ProtocolVersion.magic)
            writer.u16(version)
            writer.string(clientName)
        case .openSession(let timeout, let flags):
            writer.u32(timeout)
            writer.u8(flags.rawValue)
        case .resumeSession(let sessionID, let secret):
            writer.u64(sessionID)
            writer.u64(secret.high)
            writer.u64(secret.low)
        case .closeSession, .ping:
            break
        case .authenticate(let token):
            writer.blob(token)
        case .create(let path, let data, let mode):
            writer.string(path)
            writer.blob(data)
            writer.u8(mode.flags)
        case .delete(let path, let version), .check(let path, let version):
            writer.string(path)
            writer.i32(version)
        case .exists(let path, let watch), .get(let path, let watch):
            writer.string(path)
            writer.bool(watch)
        case .children(let path, let watch, let after, let limit):
            writer.string(path)
            writer.bool(watch)
            writer.string(after)
            writer.u32(limit)
        case .set(let path, let data, let version):
            writer.string(path)
            writer.blob(data)
            writer.i32(version)
        case .addWatch(let path, let mode), .removeWatches(let path, let mode):
            writer.string(path)
            writer.u8(mode.rawValue)
        case .multi(let operations):
            precondition(operations.count <= Int(UInt16.max))
            writer.u16(UInt16(operations.count))
            for operation in operations {
                switch operation {
                case .create(let path, let data, let mode):
                    writer.u8(Opcode.create.rawValue)
                    writer.string(path)
                    writer.blob(data)
                    writer.u8(mode.flags)
                case .delete(let path, let version):
                    writer.u8(Opcode.delete.rawValue)
                    writer.string(path)
                    writer.i32(version)
                case .set(let path, let data, let version):
                    writer.u8(Opcode.set.rawValue)
                    writer.string(path)
                    writer.blob(data)
                    writer.i32(version)
                case .check(let path, let version):
                    writer.u8(Opcode.check.rawValue)
                    writer.string(path)
                    writer.i32(version)
                }
            }
        case .acquire(let lock):
            writer.string(lock.path)
            writer.u8(lock.kind.rawValue)
            writer.u32(lock.permits)
            writer.u32(lock.waitMilliseconds)
            writer.u32(lock.leaseMilliseconds)
            if !lock.owner.isEmpty {
                writer.string(lock.owner)
                writer.u8(lock.revocable ? 1 : 0)
                writer.u32(lock.lockDelayMilliseconds)
            }
        case .release(let node, let token):
            writer.string(node)
            writer.u64(token)
        case .cancel(let acquireRequestID):
            writer.u32(acquireRequestID)
        case .checkToken(let path, let token):
            writer.string(path)
            writer.u64(token)
        case .inspect(let path):
            writer.string(path)
        case .renew(let node, let token, let leaseMilliseconds):
            writer.string(node)
            writer.u64(token)
            writer.u32(leaseMilliseconds)
        case .requestRevocation(let path):
            writer.string(path)
        case .forceRelease(let path, let sessionID):
            writer.string(path)
            writer.u64(sessionID)
        case .acquireAll(let locks, let waitMilliseconds, let leaseMilliseconds):
            writer.u32(waitMilliseconds)
            writer.u32(leaseMilliseconds)
            writer.u16(UInt16(locks.count))
            for lock in locks {
                writer.string(lock.path)
                writer.u8(lock.kind.rawValue)
                writer.u32(lock.permits)
            }
        case .backup(let file):
            writer.string(file)
        }
        writer.finishFrame(start)
    }

    public static func encodeRequest(_ request: Request, requestID: UInt32) -> [UInt8] {
        var writer = WireWriter()
        encodeRequest(request, requestID: requestID, into: &writer)
        return writer.bytes
    }

    /// Decodes one request body (the bytes after the length prefix). A failure carries the request id
    /// when the header was readable, so the error reply can be matched.
    public static func decodeRequest(_ body: [UInt8], from start: Int = 0, to end: Int? = nil)
        throws(DecodeFailure) -> (requestID: UInt32, request: Request) {
        var reader = WireReader(body, from: start, to: end)
        return try decodeRequest(&reader)
    }

    /// `decodeRequest` straight from bytes the caller owns (batond's input buffer): no copy. The
    /// request owns everything it holds (strings and data are copied out), so it outlives `body`.
    /// With one connection's `strings`, a long string field with the bytes of one it keeps (the last
    /// the connection named, the node of its last grant) is that string, not a new one; `strings`
    /// then keeps what this request named. The caller keeps `strings` alive for the call.
    public static func decodeRequest(inPlace body: UnsafeRawBufferPointer, strings: StringMemo? = nil)
        throws(DecodeFailure) -> (requestID: UInt32, request: Request) {
        var reader = WireReader(inPlace: body)
        reader.strings = strings
        return try decodeRequest(&reader)
    }

    static func decodeRequest(_ reader: inout WireReader) throws(DecodeFailure) -> (requestID: UInt32, request: Request) {
        let opcodeByte = try reader.u8("opcode")
        let requestID = try reader.u32("request id")
        guard let opcode = Opcode(rawValue: opcodeByte) else {
            throw DecodeFailure(.unknownOpcode, "unknown opcode 0x\(String(opcodeByte, radix: 16))",
                                requestID: requestID, opcode: opcodeByte)
        }
        do {
            let request = try decodeRequestFields(opcode, &reader)
            try reader.expectEnd()
            return (requestID, request)
        } catch {
            var failure = error
            failure.requestID = requestID
            failure.opcode = opcodeByte
            throw failure
        }
    }

    static func path(_ reader: inout WireReader) throws(DecodeFailure) -> String {
        try reader.string("path", invalidEncoding: .invalidPath)
    }

    static func decodeRequestFields(_ opcode: Opcode, _ reader: inout WireReader) throws(DecodeFailure) -> Request {
        switch opcode {
        case .hello:
            let magic = try reader.u32("magic")
            guard magic == ProtocolVersion.magic else { throw DecodeFailure(.malformedFrame, "bad magic in hello") }
            return .hello(version: try reader.u16("version"), clientName: try reader.string("client name"))
        case .openSession:
            let timeout = try reader.u32("timeout")
            let flags = SessionFlags(rawValue: try reader.u8("session flags"))
            // Reserved bits must be zero, as in create flags: a newer client fails loudly, not silently.
            guard flags.isSubset(of: SessionFlags.all) else { throw DecodeFailure(.malformedFrame, "unknown session flags") }
            return .openSession(timeoutMilliseconds: timeout, flags: flags)
        case .resumeSession:
            let sessionID = try reader.u64("session id")
            let high = try reader.u64("secret"), low = try reader.u64("secret")
            return .resumeSession(sessionID: sessionID, secret: SessionSecret(high: high, low: low))
        case .closeSession: return .closeSession
        case .ping: return .ping
        case .authenticate: return .authenticate(token: try reader.blob("token"))
        case .create:
            let path = try path(&reader), data = try reader.blob("data")
            return .create(path: path, data: data, mode: try createMode(&reader))
        case .delete: return .delete(path: try path(&reader), expectedVersion: try reader.i32("version"))
        case .check: return .check(path: try path(&reader), expectedVersion: try reader.i32("version"))
        case .exists: return .exists(path: try path(&reader), watch: try reader.bool("watch"))
        case .get: return .get(path: try path(&reader), watch: try reader.bool("watch"))
        case .children:
            let path = try path(&reader), watch = try reader.bool("watch")
            return .children(path: path, watch: watch, after: try reader.string("after"), limit: try reader.u32("limit"))
        case .set:
            let path = try path(&reader), data = try reader.blob("data")
            return .set(path: path, data: data, expectedVersion: try reader.i32("version"))
        case .addWatch, .removeWatches:
            let path = try path(&reader), modeByte = try reader.u8("watch mode")
            guard let mode = WatchMode(rawValue: modeByte) else { throw DecodeFailure(.malformedFrame, "unknown watch mode") }
            return opcode == .addWatch ? .addWatch(path: path, mode: mode) : .removeWatches(path: path, mode: mode)
        case .multi:
            let count = Int(try reader.u16("operation count"))
            var operations: [MultiOperation] = []
            operations.reserveCapacity(min(count, 1_024))
            for _ in 0..<count {
                let byte = try reader.u8("operation opcode")
                switch Opcode(rawValue: byte) {
                case .create:
                    let path = try path(&reader), data = try reader.blob("data")
                    operations.append(.create(path: path, data: data, mode: try createMode(&reader)))
                case .delete:
                    operations.append(.delete(path: try path(&reader), expectedVersion: try reader.i32("version")))
                case .set:
                    let path = try path(&reader), data = try reader.blob("data")
                    operations.append(.set(path: path, data: data, expectedVersion: try reader.i32("version")))
                case .check:
                    operations.append(.check(path: try path(&reader), expectedVersion: try reader.i32("version")))
                default:
                    throw DecodeFailure(.malformedFrame, "opcode 0x\(String(byte, radix: 16)) is not allowed in multi")
                }
            }
            return .multi(operations)
        case .acquire, .acquireOwned:
            let path = try path(&reader)
            let kindByte = try reader.u8("lock kind")
            guard let kind = LockKind(rawValue: kindByte) else { throw DecodeFailure(.malformedFrame, "unknown lock kind") }
            let permits = try reader.u32("permits"), wait = try reader.u32("wait"), lease = try reader.u32("lease")
            // Each request built once where it is returned: a `var` filled in afterwards was copied into
            // the enum (an outlined copy and destroy of the LockRequest per acquire, callgrind).
            guard opcode == .acquireOwned else {
                return .acquire(LockRequest(path: path, kind: kind, permits: permits, waitMilliseconds: wait, leaseMilliseconds: lease))
            }
            // Empty would re-encode as a plain acquire: the owner is what makes this opcode.
            let owner = try reader.string("owner")
            guard !owner.isEmpty else { throw DecodeFailure(.malformedFrame, "acquireOwned with an empty owner") }
            let flags = try reader.u8("acquire flags")
            guard flags & ~1 == 0 else { throw DecodeFailure(.malformedFrame, "reserved acquire flag bit set") }
            return .acquire(LockRequest(path: path, kind: kind, permits: permits, waitMilliseconds: wait, leaseMilliseconds: lease,
                                        owner: owner, revocable: flags & 1 != 0, lockDelayMilliseconds: try reader.u32("lock delay")))
        case .release: return .release(node: try path(&reader), token: try reader.u64("token"))
        case .cancel: return .cancel(acquireRequestID: try reader.u32("request id"))
        case .checkToken: return .checkToken(path: try path(&reader), token: try reader.u64("token"))
        case .inspect: return .inspect(path: try path(&reader))
        case .renew:
            return .renew(node: try path(&reader), token: try reader.u64("token"), leaseMilliseconds: try reader.u32("lease"))
        case .requestRevocation: return .requestRevocation(path: try path(&reader))
        case .forceRelease: return .forceRelease(path: try path(&reader), sessionID: try reader.u64("session id"))
        case .acquireAll:
            let wait = try reader.u32("wait"), lease = try reader.u32("lease")
            let count = Int(try reader.u16("lock count"))
            // Each lock takes at least 7 bytes (an empty path, kind, permits).
            guard count <= reader.remaining / 7 else { throw DecodeFailure(.malformedFrame, "lock count exceeds frame") }
            var locks: [LockSetMember] = []
            for _ in 0..<count {
                let path = try path(&reader)
                guard let kind = LockKind(rawValue: try reader.u8("lock kind")) else {
                    throw DecodeFailure(.malformedFrame, "unknown lock kind")
                }
                locks.append(LockSetMember(path: path, kind: kind, permits: try reader.u32("permits")))
            }
            return .acquireAll(locks: locks, waitMilliseconds: wait, leaseMilliseconds: lease)
        case .backup: return .backup(file: try reader.string("file"))
        }
    }

    static func createMode(_ reader: inout WireReader) throws(DecodeFailure) -> CreateMode {
        guard let mode = CreateMode(flags: try reader.u8("create mode")) else {
            throw DecodeFailure(.malformedFrame, "invalid create mode flags")
        }
        return mode
    }

    // MARK: Server messages (server -> client)

    public static func encode(_ message: ServerMessage, into writer: inout WireWriter) {
        switch message {
        case .reply(let reply): encodeReply(reply, into: &writer)
        case .event(let event): encodeEvent(event, into: &writer)
        }
    }

    public static func encode(_ message: ServerMessage) -> [UInt8] {
        var writer = WireWriter()
        encode(message, into: &writer)
        return writer.bytes
    }

    public static func encodeReply(_ reply: Reply, into writer: inout WireWriter) {
        writer.reserveIfEmpty(replyBytesTypical)
        let start = writer.bytes.count
        let code: ErrorCode
        switch reply.result {
        case .failure(let error):
            precondition(error.code != .ok, "a failed reply needs an error code")
            code = error.code
        case .success:
            code = .ok
        }
        // The length prefix (filled in by `finishFrame`) and the fixed header in one span.
        writer.fixed(FrameSplitter.prefixBytes + 8) { header in
            header.u32(0)
            header.u8(ServerFrameKind.reply.rawValue)
            header.u32(reply.requestID)
            header.u8(reply.opcode.rawValue)
            header.u16(code.rawValue)
        }
        switch reply.result {
        case .failure(let error):
            writer.string(truncatedMessage(error.message))
        case .success(let body):
            encodeBody(body, into: &writer)
        }
        writer.finishFrame(start)
    }

    /// What an output buffer starts with (`WireWriter.reserveIfEmpty`): a header, a stat and some
    /// data, so most replies take one allocation.
    static let replyBytesTypical = 256

    /// Longest error message on the wire, in UTF-8 bytes (Proto/PROTOCOL.md).
    public static let errorMessageBytesMax = 1_024

    /// Cuts a message to `errorMessageBytesMax` bytes at a character boundary, so the text stays valid UTF-8.
    static func truncatedMessage(_ message: String) -> String {
        guard message.utf8.count > errorMessageBytesMax else { return message }
        var result = ""
        var count = 0
        for character in message {
            let size = character.utf8.count
            guard count + size <= errorMessageBytesMax else { break }
            result.append(character)
            count += size
        }
        return result
    }

    static func encodeBody(_ body: ReplyBody, into writer: inout WireWriter) {
        switch body {
        case .hello(let version, let serverName, let frameBytesMax):
            writer.u16(version)
            writer.string(serverName)
            writer.u32(frameBytesMax)
        case .session(let sessionID, let secret, let timeout):
            writer.u64(sessionID)
            writer.u64(secret.high)
            writer.u64(secret.low)
            writer.u32(timeout)
        case .resumed(let timeout):
            writer.u32(timeout)
        case .empty:
            break
        case .created(let path, let stat):
            writer.string(path)
            encodeStat(stat, into: &writer)
        case .exists(let stat):
            writer.bool(stat != nil)
            if let stat { encodeStat(stat, into: &writer) }
        case .data(let stat, let data):
            encodeStat(stat, into: &writer)
            writer.blob(data)
        case .stat(let stat):
            encodeStat(stat, into: &writer)
        case .children(let stat, let names, let more):
            encodeStat(stat, into: &writer)
            writer.u32(UInt32(names.count))
            for name in names { writer.string(name) }
            writer.bool(more)
        case .multi(let results):
            writer.u16(UInt16(results.count))
            for result in results {
                switch result {
                case .created(let path, let stat):
                    writer.u8(Opcode.create.rawValue)
                    writer.string(path)
                    encodeStat(stat, into: &writer)
                case .deleted:
                    writer.u8(Opcode.delete.rawValue)
                case .set(let stat):
                    writer.u8(Opcode.set.rawValue)
                    encodeStat(stat, into: &writer)
                case .checked:
                    writer.u8(Opcode.check.rawValue)
                }
            }
        case .granted(let node, let token):
            writer.string(node)
            writer.u64(token)
        case .held(let node, let token, let holdCount):
            writer.string(node)
            writer.u64(token)
            writer.u32(holdCount)
        case .tokenStatus(let current):
            writer.bool(current)
        case .revocation(let holdersAsked):
            writer.u32(holdersAsked)
        case .forceReleased(let ended):
            writer.u32(ended)
        case .grantedAll(let holds):
            writer.u16(UInt16(holds.count))
            for hold in holds {
                writer.string(hold.node)
                writer.u64(hold.token)
            }
        case .backedUp(let lsn, let bytes):
            writer.u64(lsn)
            writer.u64(bytes)
        case .lockEntries(let entries):
            writer.u32(UInt32(entries.count))
            for entry in entries {
                writer.string(entry.node)
                writer.u8(entry.kind.rawValue)
                writer.u8(entry.position.rawValue)
                writer.u64(entry.sessionID)
                writer.string(entry.clientName)
                writer.u64(entry.token)
                writer.u64(entry.ageMilliseconds)
            }
        }
    }

    /// A stat on the wire: six u64, two i32, two u32 and the kind byte.
    static let statBytes = 6 * 8 + 4 * 4 + 1

    public static func encodeStat(_ stat: Stat, into writer: inout WireWriter) {
        writer.fixed(statBytes) { fields in
            fields.u64(stat.createdTransaction)
            fields.u64(stat.modifiedTransaction)
            fields.u64(stat.childrenTransaction)
            fields.u64(stat.createdMilliseconds)
            fields.u64(stat.modifiedMilliseconds)
            fields.i32(stat.version)
            fields.i32(stat.childrenVersion)
            fields.u64(stat.ephemeralOwner)
            fields.u32(stat.dataLength)
            fields.u32(stat.childrenCount)
            fields.u8(stat.kind.rawValue)
        }
    }

    public static func decodeStat(_ reader: inout WireReader) throws(DecodeFailure) -> Stat {
        var stat = Stat()
        stat.createdTransaction = try reader.u64("czxid")
        stat.modifiedTransaction = try reader.u64("mzxid")
        stat.childrenTransaction = try reader.u64("pzxid")
        stat.createdMilliseconds = try reader.u64("ctime")
        stat.modifiedMilliseconds = try reader.u64("mtime")
        stat.version = try reader.i32("version")
        stat.childrenVersion = try reader.i32("cversion")
        stat.ephemeralOwner = try reader.u64("ephemeral owner")
        stat.dataLength = try reader.u32("data length")
        stat.childrenCount = try reader.u32("children count")
        guard let kind = NodeKind(rawValue: try reader.u8("node kind")) else {
            throw DecodeFailure(.malformedFrame, "unknown node kind")
        }
        stat.kind = kind
        return stat
    }

    public static func encodeEvent(_ event: Event, into writer: inout WireWriter) {
        let start = writer.beginFrame()
        writer.u8(ServerFrameKind.event.rawValue)
        switch event {
        case .watch(let type, let path):
            writer.u8(EventKind.watch.rawValue)
            writer.u8(type.rawValue)
            writer.string(path)
        case .lockLost(let node, let token, let reason):
            writer.u8(EventKind.lockLost.rawValue)
            writer.string(node)
            writer.u64(token)
            writer.u8(reason.rawValue)
        case .lockSuspended(let node, let token):
            writer.u8(EventKind.lockSuspended.rawValue)
            writer.string(node)
            writer.u64(token)
        case .sessionExpired(let sessionID):
            writer.u8(EventKind.sessionExpired.rawValue)
            writer.u64(sessionID)
        case .revocationRequested(let node, let token, let requester):
            writer.u8(EventKind.revocationRequested.rawValue)
            writer.string(node)
            writer.u64(token)
            writer.u64(requester)
        case .lockResumed(let node, let token):
            writer.u8(EventKind.lockResumed.rawValue)
            writer.string(node)
            writer.u64(token)
        }
        writer.finishFrame(start)
    }

    /// Decodes one server frame body.
    public static func decodeServerMessage(_ body: [UInt8], from start: Int = 0, to end: Int? = nil)
        throws(DecodeFailure) -> ServerMessage {
        var reader = WireReader(body, from: start, to: end)
        let kindByte = try reader.u8("frame kind")
        let message: ServerMessage
        switch ServerFrameKind(rawValue: kindByte) {
        case .reply:
            let requestID = try reader.u32("request id")
            let opcodeByte = try reader.u8("opcode")
            guard let opcode = Opcode(rawValue: opcodeByte) else {
                throw DecodeFailure(.unknownOpcode, "unknown opcode in reply", requestID: requestID, opcode: opcodeByte)
            }
            let codeValue = try reader.u16("error code")
            guard let code = ErrorCode(rawValue: codeValue) else {
                throw DecodeFailure(.malformedFrame, "unknown error code \(codeValue)", requestID: requestID)
            }
            if code == .ok {
                message = .reply(Reply(requestID: requestID, opcode: opcode, result: .success(try decodeBody(opcode, &reader))))
            } else {
                let text = try reader.string("error message")
                message = .reply(Reply(requestID: requestID, opcode: opcode, result: .failure(ReplyError(code, text))))
            }
        case .event:
            message = .event(try decodeEvent(&reader))
        case nil:
            throw DecodeFailure(.malformedFrame, "unknown server frame kind \(kindByte)")
        }
        try reader.expectEnd()
        return message
    }

    static func decodeBody(_ opcode: Opcode, _ reader: inout WireReader) throws(DecodeFailure) -> ReplyBody {
        switch opcode {
        case .hello:
            return .hello(version: try reader.u16("version"), serverName: try reader.string("server name"),
                          frameBytesMax: try reader.u32("frame bytes max"))
        case .openSession:
            let sessionID = try reader.u64("session id")
            let high = try reader.u64("secret"), low = try reader.u64("secret")
            return .session(sessionID: sessionID, secret: SessionSecret(high: high, low: low),
                            timeoutMilliseconds: try reader.u32("timeout"))
        case .resumeSession:
            return .resumed(timeoutMilliseconds: try reader.u32("timeout"))
        case .closeSession, .ping, .authenticate, .delete, .check, .release, .cancel, .renew, .addWatch, .removeWatches:
            return .empty
        case .create:
            return .created(path: try reader.string("path"), stat: try decodeStat(&reader))
        case .exists:
            return .exists(try reader.bool("present") ? try decodeStat(&reader) : nil)
        case .get:
            return .data(stat: try decodeStat(&reader), data: try reader.blob("data"))
        case .set:
            return .stat(try decodeStat(&reader))
        case .children:
            let stat = try decodeStat(&reader)
            let count = Int(try reader.u32("child count"))
            guard count <= reader.remaining / 2 else { throw DecodeFailure(.malformedFrame, "child count exceeds frame") }
            var names: [String] = []
            names.reserveCapacity(count)
            for _ in 0..<count { names.append(try reader.string("child name")) }
            return .children(stat: stat, names: names, more: try reader.bool("more"))
        case .multi:
            let count = Int(try reader.u16("result count"))
            var results: [MultiResult] = []
            for _ in 0..<count {
                let byte = try reader.u8("result opcode")
                switch Opcode(rawValue: byte) {
                case .create: results.append(.created(path: try reader.string("path"), stat: try decodeStat(&reader)))
                case .delete: results.append(.deleted)
                case .set: results.append(.set(try decodeStat(&reader)))
                case .check: results.append(.checked)
                default: throw DecodeFailure(.malformedFrame, "bad multi result opcode")
                }
            }
            return .multi(results)
        case .acquire:
            return .granted(node: try reader.string("node"), token: try reader.u64("token"))
        case .acquireOwned:
            return .held(node: try reader.string("node"), token: try reader.u64("token"), holdCount: try reader.u32("hold count"))
        case .checkToken:
            return .tokenStatus(current: try reader.bool("current"))
        case .requestRevocation:
            return .revocation(holdersAsked: try reader.u32("holders asked"))
        case .forceRelease:
            return .forceReleased(ended: try reader.u32("ended"))
        case .acquireAll:
            let count = Int(try reader.u16("hold count"))
            guard count <= reader.remaining / 10 else { throw DecodeFailure(.malformedFrame, "hold count exceeds frame") }
            var holds: [LockSetHold] = []
            for _ in 0..<count { holds.append(LockSetHold(node: try reader.string("node"), token: try reader.u64("token"))) }
            return .grantedAll(holds)
        case .inspect:
            let count = Int(try reader.u32("entry count"))
            guard count <= reader.remaining / 30 else { throw DecodeFailure(.malformedFrame, "entry count exceeds frame") }
            var entries: [LockEntry] = []
            for _ in 0..<count {
                let node = try reader.string("node")
                guard let kind = LockKind(rawValue: try reader.u8("kind")),
                      let position = LockPosition(rawValue: try reader.u8("position")) else {
                    throw DecodeFailure(.malformedFrame, "bad lock entry")
                }
                entries.append(LockEntry(node: node, kind: kind, position: position, sessionID: try reader.u64("session"),
                                         clientName: try reader.string("client name"), token: try reader.u64("token"),
                                         ageMilliseconds: try reader.u64("age")))
            }
            return .lockEntries(entries)
        case .backup:
            return .backedUp(lsn: try reader.u64("lsn"), bytes: try reader.u64("bytes"))
        }
    }

    static func decodeEvent(_ reader: inout WireReader) throws(DecodeFailure) -> Event {
        let kindByte = try reader.u8("event kind")
        switch EventKind(rawValue: kindByte) {
        case .watch:
            guard let type = WatchEventType(rawValue: try reader.u8("watch type")) else {
                throw DecodeFailure(.malformedFrame, "unknown watch event type")
            }
            return .watch(type: type, path: try reader.string("path"))
        case .lockLost:
            let node = try reader.string("node"), token = try reader.u64("token")
            guard let reason = LockLostReason(rawValue: try reader.u8("reason")) else {
                throw DecodeFailure(.malformedFrame, "unknown lock-lost reason")
            }
            return .lockLost(node: node, token: token, reason: reason)
        case .lockSuspended:
            return .lockSuspended(node: try reader.string("node"), token: try reader.u64("token"))
        case .sessionExpired:
            return .sessionExpired(sessionID: try reader.u64("session id"))
        case .revocationRequested:
            return .revocationRequested(node: try reader.string("node"), token: try reader.u64("token"),
                                        requester: try reader.u64("requester"))
        case .lockResumed:
            return .lockResumed(node: try reader.string("node"), token: try reader.u64("token"))
        case nil:
            throw DecodeFailure(.malformedFrame, "unknown event kind \(kindByte)")
        }
    }
}

/// Finds frame boundaries in a byte stream. Lengths are checked before anything is allocated.
public enum FrameSplitter {
    public static let prefixBytes = 4

    /// The body length of the frame starting at `offset`, or nil if fewer than 4 bytes are there.
    /// Throws `frameTooLarge` for a length over `frameBytesMax` and `malformedFrame` for an empty body.
    public static func bodyLength(_ buffer: UnsafeRawBufferPointer, at offset: Int, frameBytesMax: Int)
        throws(DecodeFailure) -> Int? {
        guard buffer.count - offset >= prefixBytes else { return nil }
        var length = 0
        for index in 0..<prefixBytes { length = length << 8 | Int(buffer[offset + index]) }
        guard length <= frameBytesMax else {
            throw DecodeFailure(.frameTooLarge, "frame of \(length) bytes exceeds \(frameBytesMax)")
        }
        guard length > 0 else { throw DecodeFailure(.malformedFrame, "empty frame") }
        return length
    }
}

/// Accumulates a byte stream and hands out whole frame bodies; for clients and tests.
public struct FrameAccumulator: Sendable {
    public private(set) var buffer: [UInt8] = []
    private var start = 0
    public let frameBytesMax: Int

    public init(frameBytesMax: Int = Limits.default.frameBytesMax) {
        self.frameBytesMax = frameBytesMax
    }

    public mutating func append<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        buffer.append(contentsOf: bytes)
    }

    /// The next whole frame body, or nil when more bytes are needed.
    public mutating func nextBody() throws(DecodeFailure) -> [UInt8]? {
        guard buffer.count - start >= FrameSplitter.prefixBytes else { return nil }
        var length = 0
        for index in start..<(start + FrameSplitter.prefixBytes) { length = length << 8 | Int(buffer[index]) }
        guard length <= frameBytesMax else {
            throw DecodeFailure(.frameTooLarge, "frame of \(length) bytes exceeds \(frameBytesMax)")
        }
        guard length > 0 else { throw DecodeFailure(.malformedFrame, "empty frame") }
        guard buffer.count - start >= FrameSplitter.prefixBytes + length else { return nil }
        let bodyStart = start + FrameSplitter.prefixBytes
        let body = Array(buffer[bodyStart..<(bodyStart + length)])
        start = bodyStart + length
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 65_536 {
            buffer.removeFirst(start)
            start = 0
        }
        return body
    }
}
