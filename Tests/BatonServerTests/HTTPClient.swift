import BatonTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A plain-socket HTTP exchange with the metrics endpoint: send bytes, read until the server closes.
struct HTTPResponse {
    var status: Int
    var headers: [String: String]
    var body: String
}

enum HTTPClient {
    /// Connects (retrying while the daemon is still binding), sends `request`, reads to EOF.
    static func exchange(port: UInt16, request: [UInt8], timeoutSeconds: Double = 10) throws -> [UInt8] {
        let connection = try connect(port: port, timeoutSeconds: timeoutSeconds)
        try connection.sendRaw(request)
        return try readToEnd(connection.descriptor, timeoutSeconds: timeoutSeconds)
    }

    static func get(port: UInt16, path: String = "/metrics", method: String = "GET") throws -> HTTPResponse {
        let request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAccept: text/plain\r\n\r\n"
        return try parse(try exchange(port: port, request: Array(request.utf8)))
    }

    static func connect(port: UInt16, timeoutSeconds: Double = 10) throws -> RawConnection {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while true {
            do {
                return try RawConnection(port: port)
            } catch {
                if Date() > deadline { throw error }
                usleep(20_000)
            }
        }
    }

    static func readToEnd(_ descriptor: Int32, timeoutSeconds: Double) throws -> [UInt8] {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { throw TestSupportError.timedOut("the metrics endpoint did not close the connection") }
            var descriptors = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptors, 1, Int32(remaining * 1_000) + 1)
            if ready < 0 && errno != EINTR { throw TestSupportError.system("poll: \(String(cString: strerror(errno)))") }
            guard ready > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw TestSupportError.system("recv: \(String(cString: strerror(errno)))")
            }
            if count == 0 { return received }
            received += buffer[0..<count]
        }
    }

    static func parse(_ bytes: [UInt8]) throws -> HTTPResponse {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let headEnd = text.range(of: "\r\n\r\n") else {
            throw TestSupportError.unexpected("no HTTP head in \(text.debugDescription)")
        }
        let lines = text[..<headEnd.lowerBound].components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, statusParts[0] == "HTTP/1.1", let status = Int(statusParts[1]) else {
            throw TestSupportError.unexpected("bad status line \(lines[0].debugDescription)")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return HTTPResponse(status: status, headers: headers, body: String(text[headEnd.upperBound...]))
    }
}

/// The samples of a Prometheus text exposition: `name{labels}` -> value. Also checks that every
/// sample's family was announced by a `# TYPE` line before it.
struct Exposition {
    var samples: [String: Double] = [:]
    var types: [String: String] = [:]

    init(_ text: String) throws {
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4 else { throw TestSupportError.unexpected("bad TYPE line \(line)") }
                types[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("#") { continue }
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                throw TestSupportError.unexpected("bad sample line \(line)")
            }
            let series = String(line[..<space])
            var family = String(series.prefix { $0 != "{" })
            // A histogram's series are its name plus _bucket, _sum or _count.
            for suffix in ["_bucket", "_sum", "_count"] where family.hasSuffix(suffix) {
                let base = String(family.dropLast(suffix.count))
                if types[base] == "histogram" { family = base }
            }
            guard types[family] != nil else { throw TestSupportError.unexpected("sample before its TYPE: \(line)") }
            guard samples[series] == nil else { throw TestSupportError.unexpected("duplicate series \(series)") }
            samples[series] = value
        }
    }

    subscript(_ series: String) -> Double? { samples[series] }
}
