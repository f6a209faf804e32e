#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import BatonTLS

/// TLS under a TCP connection's frames (PROTOCOL.md §4.7, "TLS"). The handshake runs on the blocking
/// socket before the reader thread starts; then writers `seal` frames (under the connection's writer
/// lock, which keeps the ciphertext in order) and the reader `open`s what arrives. The session sits
/// behind its own lock, held only while bytes move through memory: never across a socket call, so
/// a writer blocked on a full socket never keeps the reader from draining replies.
final class ClientTLS: @unchecked Sendable {
    private let session: MutexLock<TLSSession>

    private init(session: TLSSession) {
        self.session = MutexLock(session)
    }

    /// Handshakes on connected `descriptor` within `timeout`, checking the server's certificate for
    /// `options.serverName ?? host`. Throws `connectFailed("TLS: ...")` with OpenSSL's reason.
    static func handshake(descriptor: Int32, host: String, options: TLSOptions, timeout: Duration) throws(BatonError) -> ClientTLS {
        let session: TLSSession
        do {
            let context = try TLSContext.client(caFile: options.caFile, certificateFile: options.certificateFile,
                                                keyFile: options.keyFile)
            session = try context.makeSession(serverName: options.serverName ?? host)
        } catch {
            throw failure(error)
        }
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while true {
            let isComplete: Bool
            do {
                isComplete = try session.handshake()
            } catch {
                // Our alert (if any) tells the server why; the connection is dropped either way.
                _ = session.withCiphertext { Socket.sendAll(descriptor, Array($0)) }
                throw failure(error)
            }
            let sent = session.withCiphertext { $0.isEmpty || Socket.sendAll(descriptor, Array($0)) }
            guard sent else { throw .connectFailed("TLS: the server closed the connection during the handshake") }
            if isComplete { return ClientTLS(session: session) }
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw .timedOut }
            var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(clamping: remaining.components.seconds * 1_000
                + remaining.components.attoseconds / 1_000_000_000_000_000 + 1)
            let polled = poll(&ready, 1, milliseconds)
            if polled < 0 && errno == EINTR { continue }
            guard polled > 0 else { throw .timedOut }
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                throw .connectFailed("TLS: the server closed the connection during the handshake (does it serve TLS, with --tls-cert?)")
            }
            buffer.withUnsafeBytes { session.feed(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
        }
    }

    /// The ciphertext of `plaintext`, preceded by anything the session still had to send; nil once the
    /// session failed.
    func seal(_ plaintext: [UInt8]) -> [UInt8]? {
        session.withLock { session -> [UInt8]? in
            let sealed = plaintext.withUnsafeBytes { bytes -> Bool in
                do throws(TLSError) { try session.write(bytes) } catch { return false }
                return true
            }
            return sealed ? session.withCiphertext { Array($0) } : nil
        }
    }

    /// Decrypts `ciphertext`; `closed` when the server ended the session (close_notify). Throws
    /// `connectFailed("TLS: ...")` when TLS failed (a server that refused this client's certificate
    /// says so with an alert right after the handshake).
    func open(_ ciphertext: ArraySlice<UInt8>) throws(BatonError) -> (plaintext: [UInt8], closed: Bool) {
        let result = session.withLock { session -> Result<([UInt8], Bool), TLSError> in
            ciphertext.withUnsafeBytes { session.feed($0) }
            var plaintext: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 16_384)
            while true {
                let read = chunk.withUnsafeMutableBytes { bytes -> Result<TLSSession.ReadResult, TLSError> in
                    do throws(TLSError) { return .success(try session.read(into: bytes)) } catch { return .failure(error) }
                }
                switch read {
                case .success(.plaintext(let count)): plaintext += chunk[..<count]
                case .success(.needsBytes): return .success((plaintext, false))
                case .success(.closed): return .success((plaintext, true))
                case .failure(let error): return .failure(error)
                }
            }
        }
        switch result {
        case .success(let opened): return opened
        case .failure(let error): throw ClientTLS.failure(error)
        }
    }

    /// `connectFailed` with a message that starts with "TLS" (the CLI adds no TCP hints to it).
    static func failure(_ error: TLSError) -> BatonError {
        .connectFailed(error.message.hasPrefix("TLS") ? error.message : "TLS: \(error.message)")
    }
}
