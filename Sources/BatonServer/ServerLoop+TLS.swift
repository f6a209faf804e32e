import BatonTLS
import Logging

/// TLS on the TCP listener (PROTOCOL.md §4.7, "TLS"): below the frames, over the same libuv stream.
/// Ciphertext read lands in the loop's read buffer as any read does; it is fed to the connection's
/// `TLSSession` and the plaintext decrypted from it goes through `didReceive`, the path of plain
/// reads. Replies are encrypted as they are written (`Connection.writePendingOutput`) and leave
/// through the same bounded output path. The handshake runs under the `hello` deadline (Admission):
/// a peer that never finishes it never says hello, and is closed then.
extension ServerLoop {
    /// What the TCP listener speaks, for the startup log.
    var tcpSecurity: String {
        guard let tlsContext else { return "plaintext" }
        return tlsContext.requiresClientCertificate ? "mutual TLS" : "TLS"
    }

    /// Loads the certificate and key (and the client CA): a bad file stops the start with OpenSSL's reason.
    func openTLS(_ tls: TLSServerConfiguration) throws(ServerError) {
        do {
            tlsContext = try TLSContext.server(certificateFile: tls.certificateFile, keyFile: tls.keyFile,
                                               clientCAFile: tls.clientCAFile)
        } catch {
            throw ServerError("TLS: \(error.message)")
        }
        tlsPlaintextBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: readBufferBytes, alignment: 16)
    }

    /// A TCP connection was accepted: it speaks TLS from its first byte. False (logged) when no
    /// session could be made; the caller closes the connection: it is never served in plaintext.
    func startTLS(_ connection: Connection) -> Bool {
        do {
            connection.tls = try tlsContext?.makeSession()
            return connection.tls != nil
        } catch {
            logger.warning("cannot start TLS", metadata: metadata(connection).merging(["error": "\(error)"]) { $1 })
            return false
        }
    }

    /// Ciphertext from the peer: decrypted (driving the handshake) into `tlsPlaintextBuffer` and
    /// handed on chunk by chunk; handshake records and alerts are queued for the turn's flush.
    func didReadCiphertext(_ ciphertext: UnsafeRawBufferPointer, of connection: Connection, tls: TLSSession) {
        guard let plaintext = tlsPlaintextBuffer else { return }
        // Announced before the first plaintext is handled: requests may depend on the peer's name.
        var isAnnounced = tls.isHandshakeComplete
        tls.feed(ciphertext)
        reading: while connection.phase == .open {
            do {
                switch try tls.read(into: plaintext) {
                case .plaintext(let count):
                    if !isAnnounced {
                        isAnnounced = true
                        tlsEstablished(connection, tls)
                    }
                    didReceive(UnsafeRawBufferPointer(rebasing: plaintext[..<count]), on: connection)
                case .needsBytes:
                    break reading
                case .closed:
                    logger.debug("peer ended TLS", metadata: metadata(connection))
                    beginDraining(connection)
                    break reading
                }
            } catch {
                // A plain-TCP client, a wrong CA, a missing or foreign client certificate: the alert
                // (if any) is sent, then the connection closes. Other connections never notice.
                logger.info(tls.isHandshakeComplete ? "TLS failed" : "TLS handshake failed",
                            metadata: metadata(connection).merging(["error": "\(error)"]) { $1 })
                beginDraining(connection)
                break reading
            }
        }
        if !isAnnounced && tls.isHandshakeComplete && tls.failure == nil { tlsEstablished(connection, tls) }
        if tls.ciphertextBytesPending > 0 && connection.phase != .closed { queueFlush(connection) }
        routeOutputs()
    }

    /// Once per connection, when the handshake completes: the client certificate's CN (mutual TLS)
    /// becomes its name, in every log line about it from here on.
    private func tlsEstablished(_ connection: Connection, _ tls: TLSSession) {
        connection.tlsPeerName = tls.peerCommonName
        var details = metadata(connection)
        details["tls_version"] = "\(tls.protocolVersion)"
        logger.debug("TLS established", metadata: details)
    }
}
