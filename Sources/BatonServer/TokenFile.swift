#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A token read from a file only its owner may read: the TCP authentication token
/// (`--tcp-token-file`, the access rules' named tokens) and the metrics token (`--metrics-token-file`).
/// The token is the file's bytes without trailing line breaks, so `openssl rand -hex 32 > FILE`
/// works; clients read the same file the same way (Proto/PROTOCOL.md §4.7).
public enum TokenFile {
    /// Shorter tokens are refused: a TCP port is open to guessing.
    public static let tokenBytesMin = 16
    public static let tokenBytesMax = 4_096

    public static func load(path: String, what: String = "TCP token") throws(ServerError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard descriptor >= 0 else {
            throw ServerError("cannot open the \(what) file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var information = stat()
        guard fstat(descriptor, &information) == 0 else {
            throw ServerError("cannot inspect the \(what) file \(path): \(String(cString: strerror(errno)))")
        }
        guard information.st_mode & S_IFMT == S_IFREG else {
            throw ServerError("the \(what) file \(path) is not a regular file")
        }
        let permissions = UInt32(information.st_mode) & 0o777
        guard permissions & 0o077 == 0 else {
            throw ServerError("""
                the \(what) file \(path) has mode \(String(permissions, radix: 8)): it must be readable by its owner \
                only (chmod 600 \(path))
                """)
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1_024)
        while bytes.count <= tokenBytesMax {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ServerError("cannot read the \(what) file \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            bytes += chunk[0..<count]
        }
        while let last = bytes.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard bytes.count <= tokenBytesMax else {
            throw ServerError("the \(what) in \(path) is longer than \(tokenBytesMax) bytes")
        }
        guard bytes.count >= tokenBytesMin else {
            throw ServerError("the \(what) in \(path) is \(bytes.count) bytes; it must be at least \(tokenBytesMin) (try: openssl rand -hex 32)")
        }
        return bytes
    }
}
