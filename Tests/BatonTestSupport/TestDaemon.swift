import BatonProtocol
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real `batond` started as a subprocess on a temporary socket (and data directory), for
/// integration tests. It is killed and its directory removed when the value goes away.
///
///     let daemon = try TestDaemon()
///     let connection = try daemon.connect()
///     ...
///     XCTAssertEqual(daemon.stop(), .exited(0))
public final class TestDaemon: @unchecked Sendable {
    public struct Options: Sendable {
        /// Also listen on a free loopback TCP port (`tcpPort`).
        public var listensOnTCP = false
        /// What TCP speaks: plain by default (`--tcp-plaintext`), or TLS (`--tls-cert F --tls-key F ...`).
        public var tcpSecurityArguments = ["--tcp-plaintext"]
        /// More `batond` arguments, e.g. `["--session-timeout-min-ms", "50"]`.
        public var arguments: [String] = []
        /// Seconds to wait for the daemon to accept connections.
        public var startTimeoutSeconds: Double = 30
        public var logLevel = "debug"
        /// Pass `--data-dir` (off for a daemon whose namespace lives elsewhere: `--store zookeeper://`).
        public var usesDataDirectory = true
        /// A command that runs `batond` (its path and arguments follow), e.g. `["/usr/sbin/ip", "netns",
        /// "exec", NAME]` for a daemon in a network namespace; it must exec, so the pid stays batond's.
        public var launcher: [String] = []
        public init(listensOnTCP: Bool = false, arguments: [String] = []) {
            self.listensOnTCP = listensOnTCP
            self.arguments = arguments
        }
    }

    /// How a daemon process ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)
        public var description: String {
            switch self {
            case .exited(let status): return "exited with status \(status)"
            case .signaled(let signal): return "killed by signal \(signal)"
            }
        }
    }

    /// May be changed while the daemon is stopped: the next `start()` uses the new arguments.
    public var options: Options
    /// A fresh directory such as /tmp/baton-test-a1B2c3 holding the socket, the data and the log.
    public let directory: String
    /// `<directory>/s.sock`: short enough for `sun_path`.
    public let socketPath: String
    /// `<directory>/data`: kept across `restart()`.
    public let dataDirectory: String
    /// Where the daemon's standard error goes (appended across restarts).
    public let logPath: String
    /// The loopback TCP port when `listensOnTCP` (the same one across restarts).
    public private(set) var tcpPort: UInt16?
    /// The token TCP clients authenticate with when `listensOnTCP`, kept in `tcpTokenPath` (mode 0600).
    public private(set) var tcpToken: [UInt8]?
    /// `<directory>/tcp.token`, passed as `--tcp-token-file` when `listensOnTCP`.
    public var tcpTokenPath: String { directory + "/tcp.token" }
    private var process: Process?

    public init(_ options: Options = Options()) throws {
        self.options = options
        directory = try makeTemporaryDirectory("baton-test-")
        socketPath = directory + "/s.sock"
        dataDirectory = directory + "/data"
        logPath = directory + "/batond.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        if options.listensOnTCP {
            tcpPort = try TestDaemon.freeLoopbackPort()
            let token = TestDaemon.randomToken()
            try TestDaemon.writeTokenFile(tcpTokenPath, contents: token + [UInt8(ascii: "\n")])
            tcpToken = token
        }
        try start()
    }

    deinit {
        if isRunning {
            kill(SIGKILL)
            _ = waitForExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The process id of the running daemon (0 when none was started).
    public var pid: Int32 { process?.processIdentifier ?? 0 }
    public var isRunning: Bool { runningProcess != nil }

    /// The process, unless it has ended. Foundation's `Process` on Linux notices a child's exit through
    /// a socket the child inherits, and now and then never does (swift-corelibs-foundation#4795): the
    /// child stays a zombie while `isRunning` says true and `waitUntilExit()` never returns. So the
    /// kernel is asked too, with `waitid(WNOWAIT)`, which leaves the child for Foundation to reap.
    private var runningProcess: Process? {
        guard let process, process.isRunning, !TestDaemon.childEnded(process.processIdentifier) else { return nil }
        return process
    }

    /// Whether the child has ended: exited and not reaped yet, or reaped already. Foundation's monitor
    /// reaps it and only then clears `isRunning`: in between, `waitid` fails with ECHILD, and a
    /// daemon that `waitForExit` saw end looked running to `start` (its precondition failed).
    static func childEnded(_ pid: Int32) -> Bool {
        var information = siginfo_t()
        guard waitid(P_PID, id_t(pid), &information, WEXITED | WNOHANG | WNOWAIT) == 0 else { return errno == ECHILD }
        return information._sifields._sigchld.si_pid == pid
    }

    /// How the child ended if it has ended and is not yet reaped, else nil.
    public static func exitedChild(_ pid: Int32) -> Termination? {
        var information = siginfo_t()
        guard waitid(P_PID, id_t(pid), &information, WEXITED | WNOHANG | WNOWAIT) == 0,
              information._sifields._sigchld.si_pid == pid else { return nil }
        let status = information._sifields._sigchld.si_status
        return information.si_code == Int32(CLD_EXITED) ? .exited(status) : .signaled(status)
    }

    /// How the last run ended, from Foundation or, if Foundation missed it, from the kernel.
    private func termination(of process: Process) -> Termination? {
        if !process.isRunning { return TestDaemon.termination(of: process) }
        return TestDaemon.exitedChild(process.processIdentifier)
    }

    /// Everything the daemon wrote to standard error so far (all runs): attach it to failures.
    public var standardError: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Prints what each daemon logged when `failures` (a test run's `totalFailureCount`) is not 0: a
    /// test's tearDown calls this so that a failure's log shows why. (`hasSucceeded` cannot say: it
    /// is false until the run has stopped, after tearDown.)
    public static func printLogs(_ daemons: [TestDaemon], failures: Int) {
        guard failures > 0 else { return }
        for daemon in daemons { print("--- batond log (\(daemon.directory)):\n\(daemon.standardError)") }
    }

    /// The arguments the daemon is started with.
    public var arguments: [String] {
        var arguments = ["--socket", socketPath, "--log-level", options.logLevel]
        if options.usesDataDirectory { arguments += ["--data-dir", dataDirectory] }
        if let tcpPort {
            arguments += ["--listen", "127.0.0.1:\(tcpPort)", "--tcp-token-file", tcpTokenPath] + options.tcpSecurityArguments
        }
        return arguments + options.arguments
    }

    /// Starts the daemon (again, after `stop` or `kill`) and waits until it accepts connections.
    public func start() throws {
        precondition(!isRunning, "the daemon is already running")
        let process = Process()
        if let launcher = options.launcher.first {
            process.executableURL = URL(fileURLWithPath: launcher)
            process.arguments = Array(options.launcher.dropFirst()) + [try TestDaemon.executablePath()] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: try TestDaemon.executablePath())
            process.arguments = arguments
        }
        guard let log = FileHandle(forWritingAtPath: logPath) else {
            throw TestSupportError.system("cannot open \(logPath)")
        }
        log.seekToEndOfFile()
        process.standardError = log
        process.standardOutput = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.process = process
        try? log.close()
        try waitUntilAccepting()
    }

    private func waitUntilAccepting() throws {
        let deadline = RawConnection.monotonicSeconds() + options.startTimeoutSeconds
        while true {
            guard isRunning else {
                throw TestSupportError.unexpected("batond exited during start (\(terminationDescription)); its log:\n\(standardError)")
            }
            if TestDaemon.accepts(unixPath: socketPath), tcpPort.map(TestDaemon.accepts(tcpPort:)) ?? true {
                return
            }
            guard RawConnection.monotonicSeconds() < deadline else {
                throw TestSupportError.timedOut("batond did not accept connections on \(socketPath); its log:\n\(standardError)")
            }
            usleep(10_000)
        }
    }

    private var terminationDescription: String {
        guard let process, let termination = termination(of: process) else { return "running" }
        return termination.description
    }

    /// Sends a signal to the daemon.
    public func kill(_ signal: Int32) {
        guard let process = runningProcess else { return }
        Glibc.kill(process.processIdentifier, signal)
    }

    /// Waits for the daemon to end; nil if it is still running after `timeoutSeconds`.
    public func waitForExit(timeoutSeconds: Double = 10) -> Termination? {
        guard let process else { return nil }
        let deadline = RawConnection.monotonicSeconds() + timeoutSeconds
        while true {
            if !process.isRunning {
                process.waitUntilExit()
                return TestDaemon.termination(of: process)
            }
            if let termination = TestDaemon.exitedChild(process.processIdentifier) { return termination }
            guard RawConnection.monotonicSeconds() < deadline else { return nil }
            usleep(5_000)
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `timeoutSeconds`. Returns how it ended.
    @discardableResult
    public func stop(timeoutSeconds: Double = 10) -> Termination? {
        guard process != nil else { return nil }
        kill(SIGTERM)
        if let termination = waitForExit(timeoutSeconds: timeoutSeconds) { return termination }
        kill(SIGKILL)
        return waitForExit(timeoutSeconds: timeoutSeconds)
    }

    /// Stops (gracefully) and starts again with the same socket, port and data directory.
    public func restart() throws {
        stop()
        try start()
    }

    /// A new connection over the Unix socket.
    public func connect() throws -> RawConnection {
        try RawConnection(unixPath: socketPath)
    }

    /// A new connection over TCP (the daemon must have been started with `listensOnTCP`). Unless
    /// told otherwise, its `hello()` (and so `handshake()`) also authenticates with the daemon's token.
    public func connectTCP(authenticating: Bool = true) throws -> RawConnection {
        guard let tcpPort else { throw TestSupportError.unexpected("the daemon was started without TCP") }
        let connection = try RawConnection(port: tcpPort)
        if authenticating { connection.authenticationToken = tcpToken }
        return connection
    }

    // MARK: Helpers

    /// Runs `batond` with exactly these arguments to completion (for start-up refusals).
    public static func runToCompletion(arguments: [String], timeoutSeconds: Double = 30) throws -> (termination: Termination, standardError: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try executablePath())
        process.arguments = arguments
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        let deadline = RawConnection.monotonicSeconds() + timeoutSeconds
        while process.isRunning {
            guard RawConnection.monotonicSeconds() < deadline else {
                Glibc.kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                throw TestSupportError.timedOut("batond \(arguments.joined(separator: " ")) did not exit")
            }
            usleep(5_000)
        }
        process.waitUntilExit()
        return (termination(of: process), String(decoding: output, as: UTF8.self))
    }

    static func termination(of process: Process) -> Termination {
        process.terminationReason == .uncaughtSignal ? .signaled(process.terminationStatus) : .exited(process.terminationStatus)
    }

    /// The `batond` built next to the test bundle (the products directory of `swift build`), or
    /// `$BATOND_PATH`.
    public static func executablePath() throws -> String {
        var candidates: [String] = []
        if let path = ProcessInfo.processInfo.environment["BATOND_PATH"], !path.isEmpty { candidates.append(path) }
        var directories: [URL] = []
        if let executable = Bundle.main.executableURL { directories.append(executable.deletingLastPathComponent()) }
        directories.append(Bundle.main.bundleURL)
        directories.append(Bundle.main.bundleURL.deletingLastPathComponent())
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            directories.append(bundle.bundleURL.deletingLastPathComponent())
        }
        if let first = CommandLine.arguments.first {
            directories.append(URL(fileURLWithPath: first).deletingLastPathComponent())
        }
        candidates += directories.map { $0.appendingPathComponent("batond").path }
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        throw TestSupportError.unexpected("""
            no batond executable found (looked at \(candidates.joined(separator: ", "))); \
            build it first (swift build --build-tests builds it with the tests) or set BATOND_PATH
            """)
    }

    /// 32 random bytes as 64 hex digits.
    public static func randomToken() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        return (0..<64).map { _ in digits[Int(generator.next() % 16)] }
    }

    /// Creates (or replaces) a file with `mode` from the first instant and writes `contents`.
    public static func writeTokenFile(_ path: String, contents: [UInt8], mode: mode_t = 0o600) throws {
        unlink(path)
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw TestSupportError.system("create \(path): \(RawConnection.lastError())") }
        defer { Glibc.close(descriptor) }
        // The umask may have narrowed the mode: set it exactly (tests also ask for wide modes).
        guard fchmod(descriptor, mode) == 0 else { throw TestSupportError.system("chmod \(path): \(RawConnection.lastError())") }
        let written = contents.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == contents.count else { throw TestSupportError.system("write \(path): \(RawConnection.lastError())") }
    }

    /// A loopback port that was free a moment ago.
    public static func freeLoopbackPort() throws -> UInt16 {
        let descriptor = socket(AF_INET, RawConnection.streamType, 0)
        guard descriptor >= 0 else { throw TestSupportError.system("socket: \(RawConnection.lastError())") }
        defer { Glibc.close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
                bind(descriptor, pointer, length) == 0 && getsockname(descriptor, pointer, &length) == 0
            }
        }
        guard bound else { throw TestSupportError.system("bind 127.0.0.1:0: \(RawConnection.lastError())") }
        return UInt16(bigEndian: address.sin_port)
    }

    static func accepts(unixPath: String) -> Bool {
        (try? RawConnection(unixPath: unixPath)) != nil
    }

    static func accepts(tcpPort: UInt16) -> Bool {
        (try? RawConnection(port: tcpPort)) != nil
    }
}
