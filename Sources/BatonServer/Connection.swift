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
/// Reads land in a fixed buffer (`readBuffer[readStart..<readEnd]` holds unparsed bytes); whole
/// frames are decoded from it, a partial tail is moved to the front. A frame too big for the fixed
/// buffer is gathered in `largeFrame`, whose memory is dropped once the frame is decoded.
/// Replies are encoded into `output` and written once per loop turn.
final class Connection {
    enum Phase {
        /// Reading requests, writing replies.
        case open
        /// No more reading; queued output is written, then the stream is shut down and closed.
        case draining
        /// `uv_close` was called; the handle is gone once the close callback runs.
        case closed
    }

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
    let readBuffer: UnsafeMutableRawPointer
    let readCapacity: Int
    var readStart = 0
    var readEnd = 0
    /// Body bytes of a frame larger than the read buffer, gathered until `largeFrameBodyBytes`.
    var largeFrame: [UInt8] = []
    var largeFrameBodyBytes = 0

    // Write side.
    var output = WireWriter(capacity: 0)

    init(id: ConnectionID, transport: TransportKind, handle: UnsafeMutableRawPointer, readCapacity: Int) {
        precondition(readCapacity >= 1_024, "a read buffer must hold at least small frames")
        self.id = id
        self.transport = transport
        self.handle = handle
        self.readCapacity = readCapacity
        guard let buffer = malloc(readCapacity) else { fatalError("out of memory") }
        readBuffer = buffer
    }

    deinit {
        // Safe: the connection is released by the close callback, after libuv's last read.
        free(readBuffer)
    }

    var stream: UnsafeMutablePointer<uv_stream_t> { baton_stream(handle) }

    /// Bytes waiting for this peer: encoded but unwritten, plus handed to libuv but not yet sent.
    var outputBytesQueued: Int { output.bytes.count + uv_stream_get_write_queue_size(stream) }

    /// Where the next read may land: after the unparsed bytes, or the whole buffer while a large
    /// frame is being gathered (its bytes are moved out after every read).
    func nextReadBuffer() -> uv_buf_t {
        if largeFrameBodyBytes > 0 {
            return uv_buf_init(readBuffer.assumingMemoryBound(to: CChar.self), UInt32(readCapacity))
        }
        precondition(readEnd < readCapacity, "the read buffer always has room after compaction")
        return uv_buf_init((readBuffer + readEnd).assumingMemoryBound(to: CChar.self), UInt32(readCapacity - readEnd))
    }

    /// What the decoder found in a batch of bytes.
    enum Decoded {
        case request(UInt32, Request)
        case failure(DecodeFailure)
    }

    /// Takes `count` new bytes from the last read and hands every whole frame to `deliver`, in order.
    /// Returns false once a failure left the stream unusable (a bad length prefix, or a frame whose
    /// error closes the connection): the caller stops reading.
    func consume(_ count: Int, frameBytesMax: Int, deliver: (Decoded) -> Void) -> Bool {
        if largeFrameBodyBytes > 0 {
            let taken = min(largeFrameBodyBytes - largeFrame.count, count)
            largeFrame.append(contentsOf: UnsafeRawBufferPointer(start: readBuffer, count: taken))
            if largeFrame.count == largeFrameBodyBytes {
                let body = largeFrame
                largeFrame = []  // drops the memory: large frames are rare
                largeFrameBodyBytes = 0
                guard decode(body, from: 0, to: body.count, deliver: deliver) else { return false }
            }
            readStart = taken
            readEnd = count
            if taken == count {
                readStart = 0
                readEnd = 0
                return true
            }
        } else {
            readEnd += count
        }
        return parseBuffered(frameBytesMax: frameBytesMax, deliver: deliver)
    }

    private func parseBuffered(frameBytesMax: Int, deliver: (Decoded) -> Void) -> Bool {
        let buffered = UnsafeRawBufferPointer(start: readBuffer, count: readEnd)
        // First find the whole frames, checking each length before anything is allocated.
        var cursor = readStart
        var partialBodyBytes: Int?
        var framingFailure: DecodeFailure?
        while true {
            let length: Int?
            do {
                length = try FrameSplitter.bodyLength(buffered, at: cursor, frameBytesMax: frameBytesMax)
            } catch {
                framingFailure = error
                break
            }
            guard let length else { break }
            guard cursor + FrameSplitter.prefixBytes + length <= readEnd else {
                partialBodyBytes = length
                break
            }
            cursor += FrameSplitter.prefixBytes + length
        }
        // Then decode them from one copy (the codec reads from an array): one allocation per read.
        if cursor > readStart {
            let frames = [UInt8](UnsafeRawBufferPointer(rebasing: buffered[readStart..<cursor]))
            var position = 0
            while position < frames.count {
                var length = 0
                for index in 0..<FrameSplitter.prefixBytes { length = length << 8 | Int(frames[position + index]) }
                let bodyStart = position + FrameSplitter.prefixBytes
                guard decode(frames, from: bodyStart, to: bodyStart + length, deliver: deliver) else { return false }
                position = bodyStart + length
            }
        }
        readStart = cursor
        if let framingFailure {
            deliver(.failure(framingFailure))
            return false
        }
        if readStart == readEnd {
            readStart = 0
            readEnd = 0
        } else if let partialBodyBytes, FrameSplitter.prefixBytes + partialBodyBytes > readCapacity {
            // Too big for the fixed buffer: gather the body apart, up to `frameBytesMax` (already checked).
            let bodyStart = readStart + FrameSplitter.prefixBytes
            largeFrame.reserveCapacity(partialBodyBytes)
            largeFrame.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffered[bodyStart..<readEnd]))
            largeFrameBodyBytes = partialBodyBytes
            readStart = 0
            readEnd = 0
        } else if readStart > 0 {
            memmove(readBuffer, readBuffer + readStart, readEnd - readStart)
            readEnd -= readStart
            readStart = 0
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

    /// Hands the encoded output to libuv in one write; the block holds the request and the bytes.
    /// Returns a libuv error code, 0 on success.
    func writePendingOutput() -> Int32 {
        let count = output.bytes.count
        guard count > 0 else { return 0 }
        let headerBytes = MemoryLayout<uv_write_t>.stride
        guard let block = malloc(headerBytes + count) else { fatalError("out of memory") }
        let payload = block + headerBytes
        output.bytes.withUnsafeBytes { payload.copyMemory(from: $0.baseAddress!, byteCount: count) }
        output = WireWriter(capacity: 0)
        let request = block.bindMemory(to: uv_write_t.self, capacity: 1)
        var buffer = uv_buf_init(payload.assumingMemoryBound(to: CChar.self), UInt32(count))
        let result = uv_write(request, stream, &buffer, 1, onWriteCompleted)
        if result < 0 { free(block) }
        return result
    }
}
