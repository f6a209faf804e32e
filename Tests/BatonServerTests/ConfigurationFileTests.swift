import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// `batond --config FILE` (TOML): every flag has a key, the command line overrides the file, and a
/// bad file stops batond with an error naming the file and the key.
final class ConfigurationFileTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    private func writeTemporary(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "batond-\(getpid())-\(UUID().uuidString).toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    private func runBatond(_ arguments: [String]) throws -> Subprocess.Outcome {
        try Subprocess.run(try TestDaemon.executablePath(), arguments)
    }

    func testTheFileAppliesAndTheCommandLineOverridesIt() throws {
        let directory = try makeTemporaryDirectory("baton-test-")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = try writeTemporary("""
            # the test daemon gives --socket, --data-dir and --log-level on the command line: those win
            socket = "\(directory)/from-file.sock"
            data-dir = "\(directory)/from-file-data"
            log-level = "critical"
            # these are only in the file
            log-format = "json"
            snapshot-every-records = 2
            """)
        let daemon = try TestDaemon(TestDaemon.Options(arguments: ["--config", file]))
        let connection = try daemon.connect()
        _ = try connection.handshake()
        for index in 0..<3 { _ = try connection.callSuccessfully(.create(path: "/c\(index)", data: [], mode: .persistent)) }
        connection.close()
        XCTAssertEqual(daemon.stop(), .exited(0))
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/from-file.sock"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/from-file-data"))
        let lines = daemon.standardError.split(separator: "\n")
        XCTAssertFalse(lines.isEmpty)
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            XCTAssertNotNil(object, "log-format json from the file: \(line)")
        }
        // --log-level debug from the command line beat the file's critical.
        XCTAssertTrue(daemon.standardError.contains("\"level\":\"debug\""), daemon.standardError)
        // snapshot-every-records = 2 from the file: three creates start a snapshot.
        XCTAssertTrue(daemon.standardError.contains("\"message\":\"snapshot started\""), daemon.standardError)
    }

    func testABadFileStopsBatondNamingTheFileAndTheKey() throws {
        let cases: [(text: String, expected: String)] = [
            ("sokcet = \"/tmp/x.sock\"", "Unknown option '--sokcet'"),
            ("snapshot-every-records = \"many\"", "The value 'many' is invalid for '--snapshot-every-records"),
            ("fsync = = \"always\"", "is not valid TOML"),
            ("[server]\nsocket = \"/tmp/x.sock\"", "[server] is a table"),
            ("fsync = 1.5", "fsync must be a string, an integer or a boolean"),
            ("config = \"/etc/other.toml\"", "cannot name another"),
        ]
        for (text, expected) in cases {
            let file = try writeTemporary(text)
            let run = try runBatond(["--config", file, "--in-memory", "--socket", "/tmp/never-\(getpid()).sock"])
            XCTAssertEqual(run.status, 1, text)
            XCTAssertTrue(run.error.contains(file), "\(text): \(run.error)")
            XCTAssertTrue(run.error.contains(expected), "\(text): \(run.error)")
        }
        let missing = try runBatond(["--config", "/nonexistent/batond.toml"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.error.contains("cannot read the configuration file /nonexistent/batond.toml"), missing.error)
    }

    /// deploy/batond.toml documents every flag as a key (a flag added later fails this until it is
    /// documented there), and the file as shipped is valid.
    func testTheExampleFileHasEveryFlagAndParses() throws {
        let example = Self.repository.appendingPathComponent("deploy/batond.toml").path
        let text = try String(contentsOfFile: example, encoding: .utf8)
        let help = try runBatond(["--help"])
        XCTAssertEqual(help.status, 0)
        let flags = Set(help.output.split(separator: "\n").compactMap { line -> String? in
            let trimmed = line.drop { $0 == " " }
            guard trimmed.hasPrefix("--") else { return nil }
            return String(trimmed.dropFirst(2).prefix { $0.isLetter || $0.isNumber || $0 == "-" })
        }).subtracting(["help", "version", "config"])
        XCTAssertGreaterThan(flags.count, 15, help.output)
        let documented = Set(text.split(separator: "\n").compactMap { line -> String? in
            var rest = Substring(line)
            if rest.hasPrefix("# ") { rest = rest.dropFirst(2) }
            guard let equals = rest.range(of: " = ") else { return nil }
            let key = rest[..<equals.lowerBound]
            return key.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" }) ? String(key) : nil
        })
        XCTAssertEqual(flags.subtracting(documented), [], "flags without a key in deploy/batond.toml")
        XCTAssertEqual(documented.subtracting(flags), [], "keys in deploy/batond.toml that are no flag")
        let parsed = try runBatond(["--config", example, "--version"])
        XCTAssertEqual(parsed.status, 0, parsed.error)
    }
}
