import BatonEngine
import BatonProtocol
import CLibUV
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One accepted transport connection, confined to the loop thread.
///
/// Reads land in the loop's one shared read buffer (`ReadBuffer`) and are consumed before the read
/// callback returns; whole frames are decoded from it. Only a frame split across reads is kept here,
/// in `partialFrame`, allocated when the split happens and dropped once the frame is decoded, so an
/// idle connection holds no read memory. Replies are encoded into `output` and written once per loop
/// turn, with `uv_try_write` first (no request, no POLLOUT registration when the socket takes it all).
final class Connection {
    enum Phase {
        /// Reading requests, writing replies.
        case open
        /// No more reading; queued output is written, then the stream is shut down and closed.
        case draining
        /// `uv_close` was called; the handle is gone once the close callback runs.
        case closed
    }

    /// Output capacity kept between turns: small replies reuse it, a big one's memory is given back.
    static let outputCapacityKeptBytes = 2_048

    let id: ConnectionID
    let transport: TransportKind
    /// The `uv_pipe_t` or `uv_tcp_t`, owned by libuv's close protocol (see `LibUV`).
    let handle: UnsafeMutableRawPointer
    var peer: String = "?"
    var phase: Phase = .open
    /// The engine has been told this connection is gone (or never accepted it); told exactly once.
    var engineReleased = false
    var isQueuedForFlush = false
    var isShutdownIssued = false
    /// Monotonic time after which a draining connection is closed even if its peer does not read.
    var lingerDeadlineMilliseconds: UInt64 = 0

    // Read side.
    /// The start of a frame split across reads, length prefix included; empty (no memory) otherwise.
    var partialFrame: [UInt8] = []
    /// Prefix plus body bytes of the frame in `partialFrame`, 0 while its prefix is incomplete.
    var partialFrameBytes = 0

    // Write side.
    var output = WireWriter(capacity: 0)

    init(id: ConnectionID, transport: TransportKind, handle: UnsafeMutableRawPointer) {
        self.id = id
        self.transport = transport
        self.handle = handle
    }

    var stream: UnsafeMutablePointer<uv_stream_t> { baton_stream(handle) }

    /// Bytes waiting for this peer: encoded but unwritten, plus handed to libuv but not yet sent.
    var outputBytesQueued: Int { output.bytes.count + uv_stream_get_write_queue_size(stream) }

    /// What the decoder found in a batch of bytes.
    enum Decoded {
        case request(UInt32, Request)
        case failure(DecodeFailure)
    }

    /// Takes the bytes of one read (valid only during the call) and hands every whole frame to
    /// `deliver`, in order; keeps a split frame's start. `scratch` is the loop's reusable decode array.
    /// Returns false once a failure left the stream unusable (a bad length prefix, or a frame whose
    /// error closes the connection): the caller stops reading.
    func consume(_ bytes: UnsafeRawBufferPointer, scratch: inout [UInt8], frameBytesMax: Int,
                 deliver: (Decoded) -> Void) -> Bool {
        let prefixBytes = FrameSplitter.prefixBytes
        var cursor = 0
        if !partialFrame.isEmpty {
            // Finish the split frame first: its prefix, then its body.
            if partialFrameBytes == 0 {
                let taken = min(prefixBytes - partialFrame.count, bytes.count)
                partialFrame.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[0..<taken]))
                cursor = taken
                guard partialFrame.count == prefixBytes else { return true }
                let length = partialFrame.withUnsafeBytes { prefix in
                    Result { () throws(DecodeFailure) -> Int? in
                        try FrameSplitter.bodyLength(prefix, at: 0, frameBytesMax: frameBytesMax)
                    }
                }
                switch length {
                case .success(let bodyBytes):
                    partialFrameBytes = prefixBytes + bodyBytes!
                case .failure(let failure):
                    partialFrame = []
                    deliver(.failure(failure))
                    return false
                }
                partialFrame.reserveCapacity(partialFrameBytes)
            }
            let taken = min(partialFrameBytes - partialFrame.count, bytes.count - cursor)
            partialFrame.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[cursor..<(cursor + taken)]))
            cursor += taken
            guard partialFrame.count == partialFrameBytes else { return true }
            let frame = partialFrame
            partialFrame = []  // drops the memory: an idle connection keeps none
            partialFrameBytes = 0
            guard decode(frame, from: prefixBytes, to: frame.count, deliver: deliver) else { return false }
        }

        // Find the whole frames, checking each length before anything is allocated.
        let framesStart = cursor
        var partialBodyBytes: Int?
        var framingFailure: DecodeFailure?
        while true {
            let length: Int?
            do {
                length = try FrameSplitter.bodyLength(bytes, at: cursor, frameBytesMax: frameBytesMax)
            } catch {
                framingFailure = error
                break
            }
            guard let length else { break }
            guard cursor + prefixBytes + length <= bytes.count else {
                partialBodyBytes = length
                break
            }
            cursor += prefixBytes + length
        }
        // Decode them from the loop's scratch array (the codec reads from an array): no allocation
        // once it has grown to the largest read.
        if cursor > framesStart {
            scratch.removeAll(keepingCapacity: true)
            scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[framesStart..<cursor]))
            var position = 0
            while position < scratch.count {
                var length = 0
                for index in 0..<prefixBytes { length = length << 8 | Int(scratch[position + index]) }
                let bodyStart = position + prefixBytes
                guard decode(scratch, from: bodyStart, to: bodyStart + length, deliver: deliver) else { return false }
                position = bodyStart + length
            }
        }
        if let framingFailure {
            deliver(.failure(framingFailure))
            return false
        }
        if cursor < bytes.count {
            // A split frame: keep its start, with room for all of it once the length is known
            // (already checked against `frameBytesMax`).
            let tail = UnsafeRawBufferPointer(rebasing: bytes[cursor...])
            if let partialBodyBytes {
                partialFrameBytes = prefixBytes + partialBodyBytes
                partialFrame.reserveCapacity(partialFrameBytes)
            } else {
                partialFrame.reserveCapacity(prefixBytes)
            }
            partialFrame.append(contentsOf: tail)
        }
        return true
    }

    private func decode(_ bytes: [UInt8], from start: Int, to end: Int, deliver: (Decoded) -> Void) -> Bool {
        do {
            let (requestID, request) = try Codec.decodeRequest(bytes, from: start, to: end)
            deliver(.request(requestID, request))
            return true
        } catch {
            deliver(.failure(error))
            return !error.code.closesConnection
        }
    }

    /// Writes the encoded output: as much as the socket takes at once with `uv_try_write`, then the
    /// rest (if any) through one `uv_write` whose block holds the request and the bytes, freed in the
    /// write callback. Returns a libuv error code, 0 on success.
    func writePendingOutput() -> Int32 {
        let count = output.bytes.count
        guard count > 0 else { return 0 }
        let result = output.bytes.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) -> Int32 in
            let base = bytes.baseAddress!
            var written = 0
            // uv_try_write refuses (UV_EAGAIN) while earlier writes are queued, which keeps the order.
            var whole = uv_buf_init(UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: CChar.self)), UInt32(count))
            let tried = uv_try_write(stream, &whole, 1)
            if tried >= 0 {
                written = Int(tried)
            } else if tried != UV_EAGAIN.rawValue {
                return tried
            }
            let remaining = count - written
            guard remaining > 0 else { return 0 }
            let headerBytes = MemoryLayout<uv_write_t>.stride
            guard let block = malloc(headerBytes + remaining) else { fatalError("out of memory") }
            let payload = block + headerBytes
            payload.copyMemory(from: base + written, byteCount: remaining)
            let request = block.bindMemory(to: uv_write_t.self, capacity: 1)
            var buffer = uv_buf_init(payload.assumingMemoryBound(to: CChar.self), UInt32(remaining))
            let result = uv_write(request, stream, &buffer, 1, onWriteCompleted)
            if result < 0 { free(block) }
            return result
        }
        if output.bytes.capacity > Connection.outputCapacityKeptBytes {
            output = WireWriter(capacity: 0)
        } else {
            output.removeAll(keepingCapacity: true)
        }
        return result
    }
}
