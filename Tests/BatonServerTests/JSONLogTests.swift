import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// `batond --log-format json`: every line on standard error is one JSON object with the same five
/// keys first and snake_case metadata keys.
final class JSONLogTests: XCTestCase {
    static let fixedKeys = ["time", "level", "logger", "source", "message"]

    private func objects(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [[String: Any]] {
        var result: [[String: Any]] = []
        for textLine in text.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(textLine.utf8)) as? [String: Any] else {
                XCTFail("not a JSON object: \(textLine)", file: file, line: line)
                continue
            }
            result.append(object)
        }
        return result
    }

    func testEveryLineIsAJSONObjectWithConsistentKeys() throws {
        let daemon = try TestDaemon(TestDaemon.Options(arguments: ["--log-format", "json", "--snapshot-every-records", "3"]))
        let connection = try daemon.connect()
        _ = try connection.handshake(clientName: "json \"quoted\"\nname")
        for index in 0..<5 {
            _ = try connection.callSuccessfully(.create(path: "/n\(index)", data: [1], mode: .persistent))
        }
        connection.close()
        XCTAssertEqual(daemon.stop(), .exited(0))

        let lines = objects(daemon.standardError)
        XCTAssertGreaterThan(lines.count, 3, daemon.standardError)
        let keyPattern = try NSRegularExpression(pattern: "^[a-z][a-z0-9_]*$")
        for object in lines {
            for key in JSONLogTests.fixedKeys { XCTAssertTrue(object[key] is String, "\(key) missing in \(object)") }
            XCTAssertEqual(object["logger"] as? String, "batond")
            XCTAssertTrue(["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(object["level"] as? String ?? ""))
            let time = object["time"] as? String ?? ""
            XCTAssertNotNil(time.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression), time)
            for key in object.keys {
                XCTAssertEqual(keyPattern.numberOfMatches(in: key, range: NSRange(key.startIndex..., in: key)), 1, "key \(key) in \(object)")
            }
        }
        let ready = try XCTUnwrap(lines.first { $0["message"] as? String == "ready" }, daemon.standardError)
        XCTAssertEqual(ready["socket"] as? String, daemon.socketPath)
        XCTAssertTrue(lines.contains { $0["message"] as? String == "snapshot started" && $0["records_since_last"] is String })
        XCTAssertTrue(lines.contains { $0["message"] as? String == "store recovered" && $0["next_lsn"] is String })
        XCTAssertEqual(lines.last?["message"] as? String, "stopped")
    }

    func testAStartupErrorIsAJSONLineToo() throws {
        let directory = NSTemporaryDirectory() + "baton-json-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let run = try TestDaemon.runToCompletion(arguments: ["--socket", directory + "/s.sock", "--in-memory",
                                                             "--log-format", "json", "--fsync", "sometimes"])
        XCTAssertEqual(run.termination, .exited(1))
        let last = try XCTUnwrap(objects(run.standardError).last)
        XCTAssertEqual(last["level"] as? String, "critical")
        XCTAssertEqual(last["message"] as? String, "--fsync must be always, batch or none, not sometimes")

        let bad = try TestDaemon.runToCompletion(arguments: ["--socket", directory + "/s.sock", "--log-format", "xml"])
        XCTAssertEqual(bad.termination, .exited(1))
        XCTAssertTrue(bad.standardError.contains("--log-format must be text or json, not xml"), bad.standardError)
    }
}
