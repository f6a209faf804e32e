import BatonTLS
import BatonTestSupport
import Foundation
import XCTest

/// TLS over memory buffers, no sockets: a server and a client session handing each other their
/// ciphertext, with certificates made by `openssl` (TestCertificates).
final class TLSSessionTests: XCTestCase {
    private var directory = ""
    private var certificates: TestCertificates!

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory("baton-tls-unit-")
        certificates = try TestCertificates(directory: directory)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func server(mutual: Bool = false) throws -> TLSSession {
        try TLSContext.server(certificateFile: certificates.serverCertificate, keyFile: certificates.serverKey,
                              clientCAFile: mutual ? certificates.caCertificate : nil).makeSession()
    }

    private func client(name: String = "127.0.0.1", withCertificate: Bool = false) throws -> TLSSession {
        try TLSContext.client(caFile: certificates.caCertificate,
                              certificateFile: withCertificate ? certificates.clientCertificate : nil,
                              keyFile: withCertificate ? certificates.clientKey : nil).makeSession(serverName: name)
    }

    /// Moves what `from` has to send into `to`, `chunk` bytes at a time (each piece fed separately).
    private func pass(_ from: TLSSession, to: TLSSession, chunk: Int = .max) {
        let bytes = from.withCiphertext { Array($0) }
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunk)
            bytes[offset..<end].withUnsafeBytes { to.feed($0) }
            offset = end
        }
    }

    /// Everything `session` can decrypt from what it was fed.
    private func plaintext(_ session: TLSSession) throws -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4_096)
        while true {
            let read = try buffer.withUnsafeMutableBytes { try session.read(into: $0) }
            guard case .plaintext(let count) = read else { return result }
            result += buffer[..<count]
        }
    }

    /// Runs the handshake to its end (or its failure), passing bytes `chunk` at a time.
    private func handshake(_ client: TLSSession, _ server: TLSSession, chunk: Int = .max) throws {
        for _ in 0..<20 where !(client.isHandshakeComplete && server.isHandshakeComplete) {
            try client.handshake()
            pass(client, to: server, chunk: chunk)
            _ = try plaintext(server)  // a server drives its handshake through reads, as batond does
            pass(server, to: client, chunk: chunk)
        }
    }

    func testAHandshakeFedOneByteAtATimeCompletesAndCarriesDataBothWays() throws {
        let server = try server(mutual: true), client = try client(withCertificate: true)
        try handshake(client, server, chunk: 1)
        XCTAssertTrue(client.isHandshakeComplete && server.isHandshakeComplete)
        XCTAssertEqual(server.peerCommonName, TestCertificates.clientCommonName)
        XCTAssertTrue(["TLSv1.2", "TLSv1.3"].contains(server.protocolVersion), server.protocolVersion)

        let request = (0..<50_000).map { UInt8(truncatingIfNeeded: $0) }  // several records
        try request.withUnsafeBytes { try client.write($0) }
        pass(client, to: server, chunk: 777)
        XCTAssertEqual(try plaintext(server), request)
        try Array("reply".utf8).withUnsafeBytes { try server.write($0) }
        pass(server, to: client)
        XCTAssertEqual(try plaintext(client), Array("reply".utf8))

        server.shutDown()
        pass(server, to: client)
        var buffer = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(try buffer.withUnsafeMutableBytes { try client.read(into: $0) }, .closed)
    }

    func testAWrongNameFailsTheClientAndItsAlertFailsTheServer() throws {
        let server = try server(), client = try client(name: "batond.example")
        XCTAssertThrowsError(try handshake(client, server)) { error in
            XCTAssertTrue("\(error)".contains("hostname mismatch"), "\(error)")
        }
        XCTAssertNotNil(client.failure)
        pass(client, to: server)  // the alert
        XCTAssertThrowsError(try plaintext(server))
        XCTAssertNotNil(server.failure)
    }

    func testGarbageInsteadOfAHandshakeFailsTheServerSession() throws {
        let server = try server()
        Array("\u{0}\u{0}\u{0}\u{9}not TLS at all".utf8).withUnsafeBytes { server.feed($0) }
        XCTAssertThrowsError(try plaintext(server))
        XCTAssertFalse(server.isHandshakeComplete)
    }

    func testBadFilesAreNamedInTheError() throws {
        XCTAssertThrowsError(try TLSContext.server(certificateFile: directory + "/absent.crt", keyFile: certificates.serverKey,
                                                   clientCAFile: nil)) { error in
            XCTAssertTrue("\(error)".contains("absent.crt"), "\(error)")
        }
        XCTAssertThrowsError(try TLSContext.server(certificateFile: certificates.serverCertificate, keyFile: certificates.clientKey,
                                                   clientCAFile: nil)) { error in
            XCTAssertTrue("\(error)".contains("client.key") && "\(error)".contains("mismatch"), "\(error)")
        }
        XCTAssertThrowsError(try TLSContext.client(caFile: nil, certificateFile: certificates.clientCertificate, keyFile: nil))
    }
}
