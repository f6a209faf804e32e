/// Where a client finds the sidecar and where the sidecar listens: one rule for both sides.
public enum Endpoint: Sendable, Equatable, CustomStringConvertible {
    case unix(path: String)
    case tcp(host: String, port: UInt16)

    /// Longest Unix socket path: `sockaddr_un.sun_path` holds 108 bytes with the NUL, and libuv 1.44
    /// silently truncates longer ones, so both sides refuse them.
    public static let unixPathBytesMax = 107

    /// The default socket: `$BATON_SOCKET`, else `$XDG_RUNTIME_DIR/baton.sock`, else `/tmp/baton-$UID.sock`.
    public static func defaultSocketPath(environment: [String: String], userID: UInt32) -> String {
        if let path = environment["BATON_SOCKET"], !path.isEmpty { return path }
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty { return runtime + "/baton.sock" }
        return "/tmp/baton-\(userID).sock"
    }

    /// Parses `HOST:PORT` (`[::1]:PORT` for IPv6).
    public static func parseTCP(_ text: String) -> Endpoint? {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        guard let port = UInt16(text[text.index(after: colon)...]), port > 0 else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .unix(let path): return "unix:\(path)"
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}
