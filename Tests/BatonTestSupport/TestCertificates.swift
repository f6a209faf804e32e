import Foundation

/// Certificates for TLS tests, made by the `openssl` command in a directory of the test's: a CA, a
/// server certificate for 127.0.0.1 and localhost, a client certificate (CN `test-client`), and a
/// second CA with a client certificate of its own (CN `stranger`) that the first CA never signed.
public struct TestCertificates: Sendable {
    public let directory: String
    public var caCertificate: String { directory + "/ca.crt" }
    public var serverCertificate: String { directory + "/server.crt" }
    public var serverKey: String { directory + "/server.key" }
    public var clientCertificate: String { directory + "/client.crt" }
    public var clientKey: String { directory + "/client.key" }
    public var otherCACertificate: String { directory + "/other-ca.crt" }
    public var otherClientCertificate: String { directory + "/stranger.crt" }
    public var otherClientKey: String { directory + "/stranger.key" }
    public static let clientCommonName = "test-client"

    /// Writes every file into `directory` (which must exist).
    public init(directory: String) throws {
        self.directory = directory
        try makeCA("ca", commonName: "Baton Test CA")
        try makeCA("other-ca", commonName: "Another CA")
        try makeLeaf("server", commonName: "localhost", signedBy: "ca",
                     extensions: "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        try makeLeaf("client", commonName: TestCertificates.clientCommonName, signedBy: "ca",
                     extensions: "extendedKeyUsage=clientAuth\n")
        try makeLeaf("stranger", commonName: "stranger", signedBy: "other-ca", extensions: "extendedKeyUsage=clientAuth\n")
    }

    /// batond's arguments for TLS on its TCP listener (`--tls-client-ca` with `mutual`).
    public func serverArguments(mutual: Bool = false) -> [String] {
        ["--tls-cert", serverCertificate, "--tls-key", serverKey] + (mutual ? ["--tls-client-ca", caCertificate] : [])
    }

    private static let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    private func makeCA(_ name: String, commonName: String) throws {
        try TestCertificates.openssl(["req", "-x509"] + TestCertificates.curve + [
            "-keyout", "\(directory)/\(name).key", "-out", "\(directory)/\(name).crt", "-days", "2",
            "-subj", "/CN=\(commonName)"])
    }

    private func makeLeaf(_ name: String, commonName: String, signedBy ca: String, extensions: String) throws {
        let base = "\(directory)/\(name)"
        try Data(extensions.utf8).write(to: URL(fileURLWithPath: base + ".ext"))
        try TestCertificates.openssl(["req"] + TestCertificates.curve + [
            "-keyout", base + ".key", "-out", base + ".csr", "-subj", "/CN=\(commonName)"])
        try TestCertificates.openssl(["x509", "-req", "-in", base + ".csr", "-CA", "\(directory)/\(ca).crt",
                                      "-CAkey", "\(directory)/\(ca).key", "-CAcreateserial", "-out", base + ".crt",
                                      "-days", "2", "-extfile", base + ".ext"])
    }

    private static func openssl(_ arguments: [String]) throws {
        try Subprocess.check("/usr/bin/env", ["openssl"] + arguments)
    }
}
