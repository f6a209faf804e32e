import COpenSSL

/// TLS over memory buffers (the system OpenSSL, TLS 1.2 and later): ciphertext in, plaintext out,
/// and back. It knows no sockets and no clock: batond's loop and the client's threads move the
/// bytes (PROTOCOL.md §4.7, "TLS").

/// Why a TLS context could not be made or a TLS session failed: OpenSSL's reasons, in words.
public struct TLSError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    /// `what`, then what OpenSSL queued on this thread (the queue is emptied).
    static func drained(_ what: String, ssl: OpaquePointer? = nil) -> TLSError {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            // "error:0A000086:SSL routines::certificate verify failed" -> "certificate verify failed"
            let whole = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            reasons.append(whole.split(separator: ":", omittingEmptySubsequences: false).last.map(String.init) ?? whole)
        }
        if let ssl {
            let verify = SSL_get_verify_result(ssl)
            if verify != X509_V_OK { reasons.append(String(cString: X509_verify_cert_error_string(verify))) }
        }
        return TLSError(reasons.isEmpty ? what : "\(what): \(reasons.joined(separator: "; "))")
    }
}

/// Certificates, keys and verification rules, shared by every session made from it.
public final class TLSContext: @unchecked Sendable {
    /// `SSL_CTX` is safe to share once configured; sessions take references.
    let context: OpaquePointer
    public let isServer: Bool
    /// Whether a server requires and verifies client certificates.
    public let requiresClientCertificate: Bool

    private init(context: OpaquePointer, isServer: Bool, requiresClientCertificate: Bool) {
        self.context = context
        self.isServer = isServer
        self.requiresClientCertificate = requiresClientCertificate
    }

    deinit { SSL_CTX_free(context) }

    private static func make(server: Bool) throws(TLSError) -> OpaquePointer {
        ERR_clear_error()
        guard let context = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError.drained("cannot create a TLS context")
        }
        guard baton_ssl_ctx_set_min_tls12(context) == 1 else {
            SSL_CTX_free(context)
            throw TLSError.drained("cannot require TLS 1.2")
        }
        baton_ssl_ctx_harden(context)
        return context
    }

    /// A server's context: its certificate chain and key (PEM), and with `clientCAFile` mutual TLS:
    /// every client must present a certificate that CA signed.
    public static func server(certificateFile: String, keyFile: String, clientCAFile: String?) throws(TLSError) -> TLSContext {
        let context = try make(server: true)
        do throws(TLSError) {
            try loadIdentity(context, certificateFile: certificateFile, keyFile: keyFile)
            // Clients get no session tickets: a reconnecting client does a full handshake (and the
            // server keeps no ticket keys).
            SSL_CTX_set_num_tickets(context, 0)
            if let clientCAFile {
                guard SSL_CTX_load_verify_locations(context, clientCAFile, nil) == 1 else {
                    throw TLSError.drained("cannot read the client CA file \(clientCAFile)")
                }
                // Tells clients which CAs it accepts.
                guard let names = SSL_load_client_CA_file(clientCAFile) else {
                    throw TLSError.drained("no CA certificate in \(clientCAFile)")
                }
                SSL_CTX_set_client_CA_list(context, names)
                SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
            }
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        return TLSContext(context: context, isServer: true, requiresClientCertificate: clientCAFile != nil)
    }

    /// A client's context: the CAs it trusts (`caFile`, else the system's), and for mutual TLS its
    /// certificate and key. The server's certificate is always verified.
    public static func client(caFile: String?, certificateFile: String?, keyFile: String?) throws(TLSError) -> TLSContext {
        let context = try make(server: false)
        do throws(TLSError) {
            if let caFile {
                guard SSL_CTX_load_verify_locations(context, caFile, nil) == 1 else {
                    throw TLSError.drained("cannot read the CA file \(caFile)")
                }
            } else if SSL_CTX_set_default_verify_paths(context) != 1 {
                throw TLSError.drained("cannot load the system's CA certificates")
            }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
            switch (certificateFile, keyFile) {
            case (nil, nil): break
            case (let certificate?, let key?): try loadIdentity(context, certificateFile: certificate, keyFile: key)
            default: throw TLSError("a client certificate needs its key, and a key its certificate")
            }
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        return TLSContext(context: context, isServer: false, requiresClientCertificate: false)
    }

    private static func loadIdentity(_ context: OpaquePointer, certificateFile: String, keyFile: String) throws(TLSError) {
        guard SSL_CTX_use_certificate_chain_file(context, certificateFile) == 1 else {
            throw TLSError.drained("cannot read the certificate \(certificateFile)")
        }
        guard SSL_CTX_use_PrivateKey_file(context, keyFile, SSL_FILETYPE_PEM) == 1 else {
            throw TLSError.drained("cannot read the private key \(keyFile)")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw TLSError.drained("the key \(keyFile) does not belong to the certificate \(certificateFile)")
        }
    }

    /// A session for one connection. A client's checks that the server's certificate names
    /// `serverName` (an IP address or a DNS name); a server's ignores it.
    public func makeSession(serverName: String? = nil) throws(TLSError) -> TLSSession {
        try TLSSession(context: self, serverName: serverName)
    }
}

/// One connection's TLS state over two memory buffers: `feed` takes ciphertext received, `read`
/// gives the plaintext in it, `write` takes plaintext to send, `withCiphertext` gives what to send.
/// Not thread-safe: its owner serialises every call.
public final class TLSSession {
    let ssl: OpaquePointer
    /// Ciphertext received, not yet taken by OpenSSL.
    private let incoming: OpaquePointer
    /// Ciphertext OpenSSL produced, not yet sent.
    private let outgoing: OpaquePointer
    public let isServer: Bool
    /// Set when the session failed: nothing may be read or written any more, only the alert in
    /// `withCiphertext` (if any) sent.
    public private(set) var failure: TLSError?
    /// The peer sent close_notify.
    public private(set) var isClosedByPeer = false
    private var isShutDown = false

    init(context: TLSContext, serverName: String?) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.context) else { throw TLSError.drained("cannot create a TLS session") }
        guard let incoming = baton_bio_new_mem(), let outgoing = baton_bio_new_mem() else {
            SSL_free(ssl)
            throw TLSError("out of memory")
        }
        SSL_set_bio(ssl, incoming, outgoing)  // the session owns both now
        self.ssl = ssl
        self.incoming = incoming
        self.outgoing = outgoing
        isServer = context.isServer
        if isServer {
            SSL_set_accept_state(ssl)
        } else {
            if let serverName {
                guard baton_ssl_expect_host(ssl, serverName) == 1 else {
                    SSL_free(ssl)
                    throw TLSError("cannot check the server name \(serverName)")
                }
                if !serverName.contains(where: { $0 == ":" }) && !serverName.allSatisfy({ $0.isNumber || $0 == "." }) {
                    _ = baton_ssl_set_sni(ssl, serverName)
                }
            }
            SSL_set_connect_state(ssl)
        }
    }

    deinit { SSL_free(ssl) }

    /// The handshake is done: application data flows.
    public var isHandshakeComplete: Bool { SSL_is_init_finished(ssl) == 1 }

    /// Hands ciphertext received from the peer to the session.
    public func feed(_ ciphertext: UnsafeRawBufferPointer) {
        guard !ciphertext.isEmpty else { return }
        let written = BIO_write(incoming, ciphertext.baseAddress, Int32(ciphertext.count))
        precondition(written == Int32(ciphertext.count), "a memory BIO takes every byte")
    }

    /// Drives the handshake as far as the bytes fed allow (a client's first call produces its hello).
    /// Returns whether it is complete; throws when it failed.
    @discardableResult
    public func handshake() throws(TLSError) -> Bool {
        if let failure { throw failure }
        if isHandshakeComplete { return true }
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 { return true }
        try check(result, "TLS handshake failed")
        return false
    }

    public enum ReadResult: Equatable {
        /// This many plaintext bytes were put at the start of the buffer.
        case plaintext(Int)
        /// Everything fed was taken; more ciphertext is needed (or the handshake still runs).
        case needsBytes
        /// The peer ended the session (close_notify).
        case closed
    }

    /// Plaintext from the ciphertext fed so far (driving the handshake first when needed). Call
    /// until it returns `.needsBytes`: OpenSSL may hold a decrypted record.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(TLSError) -> ReadResult {
        if let failure { throw failure }
        if isClosedByPeer { return .closed }
        ERR_clear_error()
        let count = SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count))
        if count > 0 { return .plaintext(Int(count)) }
        if SSL_get_error(ssl, count) == SSL_ERROR_ZERO_RETURN {
            isClosedByPeer = true
            return .closed
        }
        try check(count, isHandshakeComplete ? "TLS failed" : "TLS handshake failed")
        return .needsBytes
    }

    /// Encrypts `plaintext` (after the handshake) into the outgoing ciphertext.
    public func write(_ plaintext: UnsafeRawBufferPointer) throws(TLSError) {
        if let failure { throw failure }
        precondition(isHandshakeComplete, "application data waits for the handshake")
        var offset = 0
        while offset < plaintext.count {
            ERR_clear_error()
            let count = SSL_write(ssl, plaintext.baseAddress! + offset, Int32(clamping: plaintext.count - offset))
            if count > 0 {
                offset += Int(count)
            } else {
                try check(count, "TLS write failed")
                // A memory BIO never pushes back, and renegotiation is off.
                preconditionFailure("SSL_write wants I/O over memory buffers")
            }
        }
    }

    /// Queues close_notify (once; nothing after a failure or before the handshake completed).
    public func shutDown() {
        guard !isShutDown, failure == nil, isHandshakeComplete else { return }
        isShutDown = true
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    /// Ciphertext waiting to be sent.
    public var ciphertextBytesPending: Int { Int(baton_bio_pending(outgoing)) }

    /// Hands the ciphertext waiting to be sent to `send` (without a copy), then drops it: the
    /// caller has taken it (sent, or copied for a later send).
    public func withCiphertext<Result>(_ send: (UnsafeRawBufferPointer) -> Result) -> Result {
        var data: UnsafeMutablePointer<CChar>?
        let count = baton_bio_mem_data(outgoing, &data)
        let result = send(UnsafeRawBufferPointer(start: count > 0 ? data : nil, count: max(0, Int(count))))
        _ = baton_bio_reset(outgoing)
        return result
    }

    /// The subject CN of the peer's verified certificate (mutual TLS), nil without one.
    public var peerCommonName: String? {
        var buffer = [CChar](repeating: 0, count: 256)
        let length = baton_ssl_peer_common_name(ssl, &buffer, Int32(buffer.count))
        guard length >= 0 else { return nil }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// "TLSv1.3", "TLSv1.2".
    public var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    /// Records a failure unless `result` only means "more bytes needed".
    private func check(_ result: Int32, _ what: String) throws(TLSError) {
        let code = SSL_get_error(ssl, result)
        if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE { return }
        let error = code == SSL_ERROR_SSL || code == SSL_ERROR_SYSCALL
            ? TLSError.drained(what, ssl: ssl) : TLSError("\(what) (OpenSSL error \(code))")
        failure = error
        throw error
    }
}
