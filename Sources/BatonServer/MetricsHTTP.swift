import BatonEngine

/// Just enough HTTP/1.x for `GET /metrics`, `/healthz` and `/readyz`: the request line is parsed, headers are skipped, any
/// body is ignored, and every response closes the connection. Pure: bytes in, bytes out.
enum MetricsHTTP {
    /// The largest request head read; a longer one is answered 431.
    static let requestHeadBytesMax = 8_192
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    enum Outcome: Equatable {
        /// Wait for more bytes.
        case incomplete
        case respond(status: Int, includesBody: Bool)
        /// `GET /metrics` (or HEAD): answer with the exposition.
        case metrics(includesBody: Bool)
        /// `GET /healthz`: the loop answers, so the daemon is alive.
        case health(includesBody: Bool)
        /// `GET /readyz`: whether the daemon takes requests now (ServerLoop.readiness).
        case readiness(includesBody: Bool)
    }

    /// Looks at what a client sent so far. Garbage is refused as soon as it shows, without waiting
    /// for the end of the head.
    /// With `bearerToken`, `/metrics` needs `Authorization: Bearer TOKEN` (compared in constant
    /// time); without it the answer is 401. The probes stay open: they say only whether the daemon
    /// is up and ready, and Kubernetes' probes send no credentials.
    static func examine(_ bytes: ArraySlice<UInt8>, bearerToken: [UInt8]? = nil) -> Outcome {
        let lineFeed = UInt8(ascii: "\n")
        guard let firstLineEnd = bytes.firstIndex(of: lineFeed) else {
            // Not even a request line yet: refuse bytes that cannot be in one.
            if bytes.contains(where: { !isRequestLineByte($0) && $0 != UInt8(ascii: "\r") }) {
                return .respond(status: 400, includesBody: true)
            }
            return bytes.count >= requestHeadBytesMax ? .respond(status: 431, includesBody: true) : .incomplete
        }
        var line = bytes[bytes.startIndex..<firstLineEnd]
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, line.allSatisfy(isRequestLineByte),
              let method = parts.first, !method.isEmpty,
              method.allSatisfy({ (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }),
              parts[1].first == UInt8(ascii: "/") else {
            return .respond(status: 400, includesBody: true)
        }
        let version = String(decoding: parts[2], as: UTF8.self)
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else {
            return .respond(status: version.hasPrefix("HTTP/") ? 505 : 400, includesBody: true)
        }
        // The head ends with an empty line; only then is the request whole.
        guard headEnds(bytes[firstLineEnd...]) else {
            return bytes.count >= requestHeadBytesMax ? .respond(status: 431, includesBody: true) : .incomplete
        }
        let isHead = method.elementsEqual("HEAD".utf8)
        guard isHead || method.elementsEqual("GET".utf8) else { return .respond(status: 405, includesBody: true) }
        let target = parts[1]
        let path = target[target.startIndex..<(target.firstIndex(of: UInt8(ascii: "?")) ?? target.endIndex)]
        if path.elementsEqual("/metrics".utf8) {
            if let bearerToken, !Engine.tokensMatch(bearer(in: bytes[firstLineEnd...]) ?? [], bearerToken) {
                return .respond(status: 401, includesBody: !isHead)
            }
            return .metrics(includesBody: !isHead)
        }
        if path.elementsEqual("/healthz".utf8) { return .health(includesBody: !isHead) }
        if path.elementsEqual("/readyz".utf8) { return .readiness(includesBody: !isHead) }
        return .respond(status: 404, includesBody: !isHead)
    }

    /// The credentials of an `Authorization: Bearer ...` header (name and scheme in any case), or nil.
    static func bearer(in headers: ArraySlice<UInt8>) -> [UInt8]? {
        for rawLine in headers.split(separator: UInt8(ascii: "\n")) {
            var line = rawLine
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")),
                  String(decoding: line[line.startIndex..<colon], as: UTF8.self).lowercased() == "authorization" else { continue }
            let value = line[line.index(after: colon)...].drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
            let scheme = value.prefix { $0 != UInt8(ascii: " ") }
            guard String(decoding: scheme, as: UTF8.self).lowercased() == "bearer" else { return nil }
            var credentials = value.dropFirst(scheme.count).drop { $0 == UInt8(ascii: " ") }
            while let last = credentials.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { credentials = credentials.dropLast() }
            return Array(credentials)
        }
        return nil
    }

    /// Whether the bytes from the end of the request line on hold the empty line that ends the head.
    private static func headEnds(_ rest: ArraySlice<UInt8>) -> Bool {
        var previous: UInt8 = 0
        var beforePrevious: UInt8 = 0
        for byte in rest {
            if byte == UInt8(ascii: "\n") {
                if previous == UInt8(ascii: "\n") { return true }
                if previous == UInt8(ascii: "\r") && beforePrevious == UInt8(ascii: "\n") { return true }
            }
            beforePrevious = previous
            previous = byte
        }
        return false
    }

    /// Visible ASCII and the space: all a request line may hold.
    private static func isRequestLineByte(_ byte: UInt8) -> Bool {
        byte >= 0x20 && byte < 0x7f
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 431: "Request Header Fields Too Large"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: "Error"
        }
    }

    /// A complete response that announces the close.
    static func response(status: Int, body: [UInt8], contentType: String = "text/plain; charset=utf-8",
                         includesBody: Bool) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason(status))\r\n"
        head += "Content-Type: \(contentType)\r\n"
        head += "Content-Length: \(body.count)\r\n"
        if status == 405 { head += "Allow: GET, HEAD\r\n" }
        if status == 401 { head += "WWW-Authenticate: Bearer realm=\"batond\"\r\n" }
        head += "Connection: close\r\n\r\n"
        var bytes = Array(head.utf8)
        if includesBody { bytes += body }
        return bytes
    }

    static func errorResponse(status: Int, includesBody: Bool) -> [UInt8] {
        response(status: status, body: Array("\(status) \(reason(status))\n".utf8), includesBody: includesBody)
    }
}
