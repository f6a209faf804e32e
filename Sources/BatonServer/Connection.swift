import BatonEngine
import BatonProtocol
import BatonTLS
import CLibUV
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One accepted transport connection, confined to the loop thread.
///
/// Reads land in the loop's one shared read buffer and are consumed before the read callback
/// returns; whole frames are decoded from it. Only what is left is kept here, in `input`: a frame
/// split across reads, or frames held back for a later turn (budget, backpressure); it is dropped
/// once decoded, so an idle connection holds no read memory. Replies are encoded into `output` and written once per loop
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

    // One-byte fields together (here and `readPause`): an object of 216 bytes, not 232, each of
    // 10,000 connections one malloc size class smaller.
    let id: ConnectionID
    /// The `uv_pipe_t` or `uv_tcp_t`, owned by libuv's close protocol (see `LibUV`).
    let handle: UnsafeMutableRawPointer
    var peer: String = "?"
    let transport: TransportKind
    var phase: Phase = .open
    /// Why reading is stopped while the connection is open (nil: libuv reads it).
    var readPause: ReadPause?
    /// The engine has been told this connection is gone (or never accepted it); told exactly once.
    var engineReleased = false
    /// Whether (and how) it waits in the loop's `FlushQueue`.
    var flushRank = FlushQueue.Rank.none
    /// In the loop's `resumeQueue`.
    var isQueuedForResume = false
    var isShutdownIssued = false
    /// Monotonic time after which a draining connection is closed even if its peer does not read.
    var lingerDeadlineMilliseconds: UInt64 = 0
    /// Its admission state (Admission.swift) while it is open and admitted.
    var admission: AdmissionTicket?
    /// TLS between the socket and the frames (ServerLoop+TLS.swift); nil on Unix and plain TCP.
    var tls: TLSSession?
    /// With mutual TLS, the subject CN of the client's verified certificate, once the handshake is
    /// done: the peer's identity for logs (and for access rules by TCP principal).
    var tlsPeerName: String?

    // Read side.
    /// Bytes read but not yet decoded, from `inputStart` on: the start of a frame split across reads,
    /// and whole frames left for a later turn (`ServerLoop.framesPerTurnMax`, backpressure). Empty (no
    /// memory) while the connection keeps up. Bounded: reading stops while whole frames wait, so it
    /// holds at most one read buffer plus one frame.
    var input: [UInt8] = []
    var inputStart = 0
    /// Strings its requests name again: no new string per decode (`Codec.decodeRequest(inPlace:strings:)`).
    let strings = StringMemo()
    /// Frames decoded in loop turn `turn`: the per-turn budget.
    var framesThisTurn = 0
    var turn: UInt64 = 0

    enum ReadPause {
        /// Its turn's budget is spent; whole frames wait in `input` for the next turn.
        case budget
        /// Its queued output is above the high-water mark: it resumes when the peer has read enough.
        case backpressure
    }

    /// Whether undecoded bytes wait: frames the client sent that the server has not acted on yet.
    var hasUnreadInput: Bool { inputStart < input.count }

    // Write side.
    var output = WireWriter(capacity: 0)
    /// While libuv holds unwritten bytes: the smallest write-queue size seen, and when it last shrank
    /// (monotonic ms). A peer whose queue does not shrink for `writeStallMillisecondsMax` is dropped.
    var writeQueueBytesSeen = 0
    var writeProgressMilliseconds: UInt64 = 0

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

    /// Why `decodeFrames` stopped.
    enum DecodeStop {
        /// The bytes end inside a frame (or exactly at a boundary).
        case needsBytes
        /// `mayContinue` said no before the next whole frame.
        case paused
        /// A failure left the stream unusable (a bad length prefix, or an error that closes).
        case unusable
    }

    /// Hands the whole frames at the start of `bytes` to `deliver`, in order, while `mayContinue()`
    /// (asked before each frame). `frameBytesMax()` is asked before each length prefix (it grows once
    /// the connection is authenticated, which a frame of this batch may do). Each length is checked
    /// before the frame is read; each frame is decoded in place from `bytes` (the request copies out what
    /// it keeps). Returns how many bytes were consumed and why it stopped.
    static func decodeFrames(_ bytes: UnsafeRawBufferPointer, strings: StringMemo, frameBytesMax: () -> Int,
                             mayContinue: () -> Bool, deliver: (Decoded) -> Void) -> (consumed: Int, stop: DecodeStop) {
        let prefixBytes = FrameSplitter.prefixBytes
        var cursor = 0
        while true {
            let length: Int?
            do {
                length = try FrameSplitter.bodyLength(bytes, at: cursor, frameBytesMax: frameBytesMax())
            } catch {
                deliver(.failure(error))
                return (cursor, .unusable)
            }
            guard let length, cursor + prefixBytes + length <= bytes.count else { return (cursor, .needsBytes) }
            guard mayContinue() else { return (cursor, .paused) }
            let bodyStart = cursor + prefixBytes
            let body = UnsafeRawBufferPointer(rebasing: bytes[bodyStart..<(bodyStart + length)])
            cursor = bodyStart + length
            do {
                let (requestID, request) = try Codec.decodeRequest(inPlace: body, strings: strings)
                deliver(.request(requestID, request))
            } catch {
                deliver(.failure(error))
                if error.code.closesConnection { return (cursor, .unusable) }
            }
        }
    }

    /// Keeps `bytes` (the undecoded rest of a read) after what `input` already holds.
    func keepInput(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        if inputStart > 0 && inputStart == input.count {
            input.removeAll(keepingCapacity: true)
            inputStart = 0
        }
        input.append(contentsOf: bytes)
    }

    /// Drops `count` decoded bytes from the front of `input`; an emptied buffer gives its memory back.
    func consumeInput(_ count: Int) {
        guard !input.isEmpty else { return }  // closed meanwhile: its input was dropped
        inputStart += count
        if inputStart == input.count {
            input = []
            inputStart = 0
        } else if inputStart >= 65_536 && inputStart * 2 >= input.count {
            // Keep the buffer from growing by what was consumed: move the rest down now and then.
            input.removeFirst(inputStart)
            inputStart = 0
        }
    }

    /// Writes the encoded output (through TLS when the connection has it): as much as the socket
    /// takes at once with `uv_try_write`, then the rest (if any) through one `uv_write` whose block
    /// holds the request and the bytes, freed in the write callback. Returns a libuv error code, 0 on success.
    ///
    /// Everything was written or handed to libuv with its own copy: the buffer goes, so an idle
    /// connection holds no output memory. Into `spare` (emptied) if that holds none and it is small:
    /// the loop's one spare buffer, which the next connection with a reply takes (`ServerLoop.encode`),
    /// so one request at a time allocates no output buffer per turn.
    func writePendingOutput(keepingBufferIn spare: inout WireWriter) -> Int32 {
        let result = writeOutput()
        // Not empty: plaintext waiting for the TLS handshake, or a failure (the connection closes).
        guard output.bytes.isEmpty else { return result }
        if spare.bytes.capacity == 0 && output.bytes.capacity <= Connection.spareOutputBytesMax {
            swap(&output, &spare)
        } else {
            output = WireWriter(capacity: 0)
        }
        return result
    }

    /// The largest output buffer kept as the loop's spare: a few replies' worth, not a burst's.
    static let spareOutputBytesMax = 4_096

    /// As `writePendingOutput(keepingBufferIn:)`, dropping the buffer.
    func writePendingOutput() -> Int32 {
        let result = writeOutput()
        if output.bytes.isEmpty { output = WireWriter(capacity: 0) }
        return result
    }

    /// Writes what `output` holds and empties it (keeping its capacity), as `writePendingOutput` says.
    private func writeOutput() -> Int32 {
        let result: Int32
        if let tls {
            if !output.bytes.isEmpty {
                // Plaintext waits in `output` until the handshake is done (and is dropped if it never is).
                guard tls.isHandshakeComplete, tls.failure == nil else { return tls.withCiphertext { write($0) } }
                let encrypted = output.bytes.withUnsafeBytes { bytes -> Result<Void, TLSError> in
                    do throws(TLSError) { try tls.write(bytes) } catch { return .failure(error) }
                    return .success(())
                }
                if case .failure = encrypted { return UV_EPROTO.rawValue }
            }
            result = tls.withCiphertext { write($0) }
        } else {
            guard !output.bytes.isEmpty else { return 0 }
            result = output.bytes.withUnsafeBytes { write($0) }
        }
        output.removeAll(keepingCapacity: true)
        return result
    }

    /// Writes `bytes` to the stream in order after what libuv already holds: `uv_try_write`, then one
    /// `uv_write` for the rest with its own copy.
    private func write(_ bytes: UnsafeRawBufferPointer) -> Int32 {
        let count = bytes.count
        guard count > 0, let base = bytes.baseAddress else { return 0 }
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
}
