/// A minimal HTTP/1.1 client on one keep-alive connection: POST a JSON body, read the whole reply.
/// Enough for etcd's JSON gateway, and lean, so the figures measure etcd and not a client stack.
final class HTTPConnection {
    let socket: BlockingSocket
    let hostHeader: String

    init(host: String, port: UInt16) throws(BenchError) {
        socket = try BlockingSocket.connectTCP(host: host, port: port)
        hostHeader = "\(host):\(port)"
    }

    /// Returns the status code and the body.
    func post(_ path: String, json: String) throws(BenchError) -> (status: Int, body: [UInt8]) {
        let body = Array(json.utf8)
        let head = "POST \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
        try socket.send(Array(head.utf8) + body)
        let response = try socket.readHTTPHead()
        let lines = response.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw BenchError("http: bad status line \(lines.first ?? "")") }
        var contentLength: Int?
        var chunked = false
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingSpaces()
            if name == "content-length" { contentLength = Int(value) }
            if name == "transfer-encoding" && value.lowercased().contains("chunked") { chunked = true }
        }
        if chunked {
            var result: [UInt8] = []
            while true {
                let sizeLine = try socket.readLine()
                guard let size = Int(sizeLine.split(separator: ";")[0].trimmingSpaces(), radix: 16) else {
                    throw BenchError("http: bad chunk size \(sizeLine)")
                }
                if size == 0 {
                    _ = try socket.readLine()
                    return (status, result)
                }
                result += try socket.take(size)
                _ = try socket.readLine()
            }
        }
        return (status, try socket.take(contentLength ?? 0))
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " || $0 == "\r" }).reversed())
    }
}
