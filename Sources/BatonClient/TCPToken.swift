import Foundation

/// The shared token of TCP connections (PROTOCOL.md §4.7), as batond reads it from `--tcp-token-file`.
public enum TCPToken {
    /// The environment variable clients read the token file's path from when none is given.
    public static let fileEnvironmentVariable = "BATON_TCP_TOKEN_FILE"

    /// Reads a token file as batond does: its bytes without trailing CR/LF.
    public static func read(fromFile path: String) throws(BatonError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw BatonError.invalidArgument("cannot read token file \(path)")
        }
        var token = [UInt8](data)
        while let last = token.last, last == 0x0A || last == 0x0D { token.removeLast() }
        guard !token.isEmpty else { throw BatonError.invalidArgument("token file \(path) is empty") }
        return token
    }
}
