import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A command run to its end with its output collected: what tests need to run `baton` as a user,
/// `openssl`, `ip`, DocC or Python. (A daemon that keeps running is `TestDaemon`.)
public enum Subprocess {
    public struct Outcome: Sendable {
        public let status: Int32
        /// Standard output; with `mergingError`, standard error as well.
        public let output: String
        /// Standard error; empty with `mergingError`.
        public let error: String
    }

    /// Runs `executable` (a path) with `arguments` and waits for it. `environment` nil inherits ours.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                           currentDirectory: String? = nil, mergingError: Bool = false) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        let output = Pipe(), error = Pipe()
        process.standardOutput = output
        process.standardError = mergingError ? output : error
        try process.run()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = mergingError ? Data() : error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
                       error: String(decoding: errorData, as: UTF8.self))
    }

    /// Runs a command that must succeed; returns its output (standard error merged in), or throws it.
    @discardableResult
    public static func check(_ executable: String, _ arguments: [String]) throws -> String {
        let outcome = try run(executable, arguments, mergingError: true)
        guard outcome.status == 0 else {
            throw TestSupportError.unexpected("\(([executable] + arguments).joined(separator: " ")) failed: \(outcome.output)")
        }
        return outcome.output
    }
}

/// Output of a subprocess read as it comes (from a pipe's readability handler), split into complete lines.
public final class OutputLines: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = Data()

    public init() {}

    public func append(_ data: Data) { lock.withLock { buffer.append(data) } }

    /// The lines ended so far (a partial last line waits for its newline).
    public var lines: [String] {
        lock.withLock {
            let text = String(decoding: buffer, as: UTF8.self)
            guard let end = text.lastIndex(of: "\n") else { return [] }
            return text[..<end].split(separator: "\n").map(String.init)
        }
    }
}

/// A fresh directory under /tmp named `prefix` plus a unique suffix (mkdtemp); the caller removes it.
public func makeTemporaryDirectory(_ prefix: String) throws -> String {
    var template = Array("/tmp/\(prefix)XXXXXX".utf8CString)
    guard let created = mkdtemp(&template) else {
        throw TestSupportError.system("mkdtemp: \(String(cString: strerror(errno)))")
    }
    return String(cString: created)
}
