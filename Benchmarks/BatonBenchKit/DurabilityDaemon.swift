import BatonProtocol
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How a durability scenario's batond keeps its namespace.
public enum DurabilityStorage: String, Sendable, CaseIterable, CustomStringConvertible {
    case fsyncAlways = "always"
    case fsyncBatch = "batch"
    case fsyncNone = "none"
    case inMemory = "in-memory"

    public var description: String {
        self == .inMemory ? "--in-memory" : "--fsync \(rawValue)"
    }

    var arguments: [String] {
        self == .inMemory ? ["--in-memory"] : ["--fsync", rawValue]
    }
}

/// A batond the durability runner starts itself, in its own temporary directory (socket, data
/// directory, standard error), so that restarts find the same data and nothing else touches it.
/// Killed and its directory removed when the value goes away.
public final class DurabilityDaemon {
    public let executable: String
    public let storage: DurabilityStorage
    /// A fresh directory such as /tmp/baton-durability-a1B2c3.
    public let directory: String
    public var socketPath: String { directory + "/s.sock" }
    public var dataDirectory: String { directory + "/data" }
    /// Standard error of every run, appended across restarts.
    public var logPath: String { directory + "/batond.log" }
    public var endpoint: Endpoint { .unix(path: socketPath) }
    private var process: Process?

    public init(executable: String, storage: DurabilityStorage) throws(BenchError) {
        self.executable = executable
        self.storage = storage
        var template = Array("/tmp/baton-durability-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw systemError("mkdtemp") }
        directory = String(cString: created)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    }

    deinit {
        kill()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public var processID: Int32? { process.map(\.processIdentifier) }
    public var isRunning: Bool { process?.isRunning ?? false }

    /// Everything batond wrote to standard error so far.
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Starts batond (info logs: the snapshot and recovery lines are info) with `arguments` after
    /// the storage ones, and waits until it answers. Returns the time from exec to the first reply
    /// to `openSession`: the socket is bound before recovery and connections wait in the backlog,
    /// so only a reply says the namespace is recovered.
    @discardableResult
    public func start(_ arguments: [String] = [], timeoutSeconds: Double = 300) throws(BenchError) -> UInt64 {
        precondition(!isRunning, "batond is already running")
        var all = ["--socket", socketPath, "--log-level", "info"] + storage.arguments
        if storage != .inMemory { all += ["--data-dir", dataDirectory] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = all + arguments
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw BenchError("cannot open \(logPath)") }
        log.seekToEndOfFile()
        process.standardError = log
        process.standardOutput = log
        process.standardInput = FileHandle.nullDevice
        let started = MonotonicClock.nanoseconds()
        do { try process.run() } catch { throw BenchError("cannot start \(executable): \(error)") }
        try? log.close()
        self.process = process
        let deadline = started + UInt64(timeoutSeconds * 1e9)
        while true {
            if (try? BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: 10_000, clientName: "durability-ready")) != nil {
                return MonotonicClock.nanoseconds() - started
            }
            guard process.isRunning else { throw BenchError("batond exited during start; its log:\n\(self.log.suffix(2_000))") }
            guard MonotonicClock.nanoseconds() < deadline else { throw BenchError("batond did not answer within \(timeoutSeconds) s") }
            MonotonicClock.sleep(microseconds: 500)
        }
    }

    /// SIGKILL: nothing is flushed, recovery must replay the log and drop a torn tail.
    public func kill() {
        guard let process, process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM: the graceful stop (log written and synced, sessions ended); throws unless it exits 0.
    public func stop() throws(BenchError) {
        guard let process, process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw BenchError("batond did not stop cleanly (status \(process.terminationStatus))")
        }
    }

    /// The values of `key=` in the log lines whose message is `message`, in order.
    public func logValues(message: String, key: String) -> [String] {
        log.split(separator: "\n").filter { $0.hasSuffix(" " + message) }.compactMap { line in
            guard let range = line.range(of: " " + key + "=") else { return nil }
            return String(line[range.upperBound...].prefix { $0 != " " })
        }
    }

    /// How many log lines have `message`.
    public func logCount(message: String) -> Int {
        log.split(separator: "\n").reduce(0) { $0 + ($1.hasSuffix(" " + message) ? 1 : 0) }
    }
}

/// The batond to run: `$BATOND_PATH`, else the release build next to this executable or in the
/// package's .build/release, else the debug one. `isDebug` says the figures are not representative.
public func locateBatond() -> (path: String, isDebug: Bool)? {
    let environment = ProcessInfo.processInfo.environment
    if let path = environment["BATOND_PATH"], !path.isEmpty, FileManager.default.isExecutableFile(atPath: path) {
        return (path, path.contains("/debug/"))
    }
    let own = URL(fileURLWithPath: selfExecutable()).deletingLastPathComponent()
    var candidates = [own.appendingPathComponent("batond").path]
    // .build/<triple>/<configuration>/baton-bench: look in the sibling configurations too, release first.
    let buildRoot = own.deletingLastPathComponent()
    candidates.insert(buildRoot.appendingPathComponent("release/batond").path, at: 0)
    candidates.append(buildRoot.appendingPathComponent("debug/batond").path)
    for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
        let resolved = (try? FileManager.default.destinationOfSymbolicLink(atPath: candidate))
            .map { $0.hasPrefix("/") ? $0 : URL(fileURLWithPath: candidate).deletingLastPathComponent().appendingPathComponent($0).path }
            ?? candidate
        return (candidate, resolved.contains("/debug/"))
    }
    return nil
}

/// The peak resident memory of a process in bytes (VmHWM).
public func peakResidentBytes(_ processID: Int32) -> UInt64? {
    guard let text = try? String(contentsOfFile: "/proc/\(processID)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        if fields.count >= 2, let kilobytes = UInt64(fields[1]) { return kilobytes * 1_024 }
    }
    return nil
}
