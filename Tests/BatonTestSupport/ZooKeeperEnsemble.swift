import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real ZooKeeper ensemble on loopback for integration tests: N `QuorumPeerMain` JVMs started with
/// the java command line directly (Debian's zkServer.sh always reads /etc/zookeeper), each with its own
/// zoo.cfg, myid and temporary data directory, free loopback ports for client, quorum and election
/// traffic, and the AdminServer off. Only the `srvr` and `mntr` four-letter words are enabled: the harness
/// asks `srvr` whether a member serves and which one leads; the benchmark's smoke test counts requests with `mntr`.
///
/// The harness stops exactly the processes it started (by pid), also when a test fails and the value
/// is released; it never looks for other JVMs.
///
///     let ensemble = try ZooKeeperEnsemble(members: 3)
///     let connect = ensemble.connectString   // "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
///     try ensemble.kill(ensemble.leader()!)
public final class ZooKeeperEnsemble: @unchecked Sendable {
    public struct Member: Sendable {
        public let id: Int
        public let clientPort: UInt16
        public let quorumPort: UInt16
        public let electionPort: UInt16
        public let directory: String
        public var logPath: String { directory + "/zookeeper.log" }
    }

    /// What `srvr` says about a member.
    public enum Mode: String, Sendable {
        case leader, follower, standalone
    }

    /// ZooKeeper's tick: the server bounds session timeouts to 2–20 ticks, so 200 ms allows
    /// sessions of 400 ms to 4 s (short ones make expiry tests quick).
    public let tickMilliseconds: Int
    public let directory: String
    public private(set) var members: [Member] = []
    /// The address members take clients on.
    public let clientAddress: String
    private var processes: [Int: Process] = [:]

    /// The jars: Debian's zookeeper.jar names its dependencies in its manifest's Class-Path;
    /// slf4j-simple gives the server a log (warnings and up) instead of the no-op logger.
    public static let classPath = ["/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar"]

    /// Whether the ZooKeeper server jars are installed (Debian package `zookeeper`).
    public static var isInstalled: Bool {
        FileManager.default.fileExists(atPath: classPath[0]) && javaPath != nil
    }

    static let setprivPath = "/usr/bin/setpriv"

    static var javaPath: String? {
        let candidates = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map { "\($0)/java" }
        return (candidates + ["/usr/bin/java"]).first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts `members` servers and waits until every one serves (a quorum formed).
    /// `clientAddress` is where members take clients (quorum traffic stays on loopback): another
    /// address than loopback lets a sidecar in a network namespace reach them.
    public init(members count: Int = 3, tickMilliseconds: Int = 200, startTimeoutSeconds: Double = 60,
                clientAddress: String = "127.0.0.1") throws {
        precondition(count >= 1 && count <= 9, "1 to 9 members")
        self.tickMilliseconds = tickMilliseconds
        self.clientAddress = clientAddress
        var template = Array("/tmp/baton-zk-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else {
            throw TestSupportError.system("mkdtemp: \(String(cString: strerror(errno)))")
        }
        directory = String(cString: created)
        var ports: Set<UInt16> = []
        func port() throws -> UInt16 {
            while true {
                let candidate = try TestDaemon.freeLoopbackPort()
                if ports.insert(candidate).inserted { return candidate }
            }
        }
        for id in 1...count {
            members.append(Member(id: id, clientPort: try port(), quorumPort: try port(), electionPort: try port(),
                                  directory: directory + "/member\(id)"))
        }
        do {
            for member in members {
                try writeConfiguration(member)
                try start(member.id)
            }
            try waitUntilServing(timeoutSeconds: startTimeoutSeconds)
        } catch {
            stopAll()
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    deinit {
        stopAll()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The connect string of every member, e.g. "127.0.0.1:41001,127.0.0.1:41004,127.0.0.1:41007".
    public var connectString: String {
        members.map { "\(clientAddress):\($0.clientPort)" }.joined(separator: ",")
    }

    public func member(_ id: Int) -> Member { members[id - 1] }

    private func writeConfiguration(_ member: Member) throws {
        try FileManager.default.createDirectory(atPath: member.directory + "/data", withIntermediateDirectories: true)
        try "\(member.id)\n".write(toFile: member.directory + "/data/myid", atomically: true, encoding: .utf8)
        var configuration = """
            tickTime=\(tickMilliseconds)
            initLimit=50
            syncLimit=10
            dataDir=\(member.directory)/data
            clientPort=\(member.clientPort)
            clientPortAddress=\(clientAddress)
            maxClientCnxns=0
            admin.enableServer=false
            4lw.commands.whitelist=srvr,mntr

            """
        if members.count > 1 {
            for other in members {
                configuration += "server.\(other.id)=127.0.0.1:\(other.quorumPort):\(other.electionPort)\n"
            }
        }
        try configuration.write(toFile: member.directory + "/zoo.cfg", atomically: true, encoding: .utf8)
    }

    // MARK: Processes

    /// Starts member `id` (again, after `stop` or `kill`); does not wait for it to serve.
    public func start(_ id: Int) throws {
        precondition(!isRunning(id), "member \(id) is already running")
        guard let java = ZooKeeperEnsemble.javaPath else { throw TestSupportError.unexpected("no java on PATH") }
        let member = member(id)
        let process = Process()
        // A small heap and the quick JIT: three JVMs share a small test machine.
        var arguments = [
            java, "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.net.preferIPv4Stack=true",
            "-Dzookeeper.log.dir=\(member.directory)", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp", ZooKeeperEnsemble.classPath.joined(separator: ":"),
            "org.apache.zookeeper.server.quorum.QuorumPeerMain", member.directory + "/zoo.cfg",
        ]
        // If the test process dies without running deinit (a crash), the kernel kills the JVM too:
        // setpriv (util-linux) sets the parent-death signal and execs java, so the pid stays java's.
        if FileManager.default.isExecutableFile(atPath: ZooKeeperEnsemble.setprivPath) {
            arguments = [ZooKeeperEnsemble.setprivPath, "--pdeathsig", "KILL"] + arguments
        }
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        if !FileManager.default.fileExists(atPath: member.logPath) {
            _ = FileManager.default.createFile(atPath: member.logPath, contents: nil)
        }
        guard let log = FileHandle(forWritingAtPath: member.logPath) else {
            throw TestSupportError.system("cannot open \(member.logPath)")
        }
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? log.close()
        processes[id] = process
    }

    public func pid(_ id: Int) -> Int32 { processes[id]?.processIdentifier ?? 0 }

    public func isRunning(_ id: Int) -> Bool {
        guard let process = processes[id], process.isRunning,
              TestDaemon.exitedChild(process.processIdentifier) == nil else { return false }
        return true
    }

    /// Sends `signal` to member `id` (SIGSTOP freezes it, SIGCONT resumes it). SIGSTOP returns once every
    /// thread of the JVM has stopped: delivery is asynchronous, and a busy machine can let a member answer
    /// one more request after the kill(2).
    public func signal(_ id: Int, _ signal: Int32) {
        guard isRunning(id), let process = processes[id] else { return }
        let pid = process.processIdentifier
        Glibc.kill(pid, signal)
        guard signal == SIGSTOP else { return }
        for _ in 0..<500 {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            let running = tasks.contains { task in
                guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8),
                      let close = stat.lastIndex(of: ")") else { return false }
                let state = stat[stat.index(close, offsetBy: 2)]
                return state != "T" && state != "t" && state != "Z" && state != "X"
            }
            if !running { return }
            usleep(10_000)
        }
    }

    /// SIGKILL and reap: the member is gone at once, as in a crash.
    public func kill(_ id: Int) {
        signal(id, SIGCONT)
        signal(id, SIGKILL)
        reap(id, timeoutSeconds: 30)
    }

    /// SIGTERM, then SIGKILL after `timeoutSeconds`.
    public func stop(_ id: Int, timeoutSeconds: Double = 10) {
        signal(id, SIGCONT)
        signal(id, SIGTERM)
        if !reap(id, timeoutSeconds: timeoutSeconds) {
            signal(id, SIGKILL)
            reap(id, timeoutSeconds: 30)
        }
    }

    /// Stops every member this harness started.
    public func stopAll() {
        for id in processes.keys.sorted() where isRunning(id) {
            signal(id, SIGCONT)
            signal(id, SIGKILL)
        }
        for id in processes.keys.sorted() { reap(id, timeoutSeconds: 30) }
    }

    @discardableResult
    private func reap(_ id: Int, timeoutSeconds: Double) -> Bool {
        guard let process = processes[id] else { return true }
        let deadline = RawConnection.monotonicSeconds() + timeoutSeconds
        while process.isRunning && TestDaemon.exitedChild(process.processIdentifier) == nil {
            guard RawConnection.monotonicSeconds() < deadline else { return false }
            usleep(5_000)
        }
        if !process.isRunning { process.waitUntilExit() } else {
            var status: Int32 = 0
            waitpid(process.processIdentifier, &status, 0)
        }
        processes[id] = nil
        return true
    }

    // MARK: Four-letter words

    /// What member `id` says of itself: nil when it does not answer or does not serve requests.
    public func mode(_ id: Int) -> Mode? {
        guard isRunning(id), let answer = try? ZooKeeperEnsemble.fourLetterWord("srvr", port: member(id).clientPort, host: clientAddress) else { return nil }
        guard let line = answer.split(separator: "\n").first(where: { $0.hasPrefix("Mode: ") }) else { return nil }
        return Mode(rawValue: String(line.dropFirst("Mode: ".count)))
    }

    /// The member that leads now (or the single standalone member), if any.
    public func leader() -> Int? {
        members.map(\.id).first { [.leader, .standalone].contains(mode($0)) }
    }

    /// Waits until every running member serves and one leads.
    public func waitUntilServing(timeoutSeconds: Double = 60) throws {
        let deadline = RawConnection.monotonicSeconds() + timeoutSeconds
        while true {
            let running = members.map(\.id).filter(isRunning)
            guard running.count == processes.count else {
                let dead = members.map(\.id).filter { processes[$0] != nil && !isRunning($0) }
                throw TestSupportError.unexpected("ZooKeeper member(s) \(dead) exited; log:\n\(log(dead.first ?? 1))")
            }
            let modes = running.map(mode)
            if !running.isEmpty, modes.allSatisfy({ $0 != nil }), modes.contains(where: { $0 != .follower }) { return }
            guard RawConnection.monotonicSeconds() < deadline else {
                throw TestSupportError.timedOut("ZooKeeper ensemble not serving after \(timeoutSeconds) s: \(modes); log:\n\(log(1))")
            }
            usleep(50_000)
        }
    }

    /// Member `id`'s log (standard output and error of its JVM).
    public func log(_ id: Int) -> String {
        (try? String(contentsOfFile: member(id).logPath, encoding: .utf8)) ?? ""
    }

    /// Sends a four-letter word to a member's client port and returns the whole answer.
    public static func fourLetterWord(_ word: String, port: UInt16, host: String = "127.0.0.1") throws -> String {
        let connection = try RawConnection(tcpHost: host, port: port)
        try connection.sendRaw(Array(word.utf8))
        // The server answers and closes: read until the end of stream (or 2 s).
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4_096)
        while connection.isReadable(timeoutSeconds: 2) {
            let count = buffer.withUnsafeMutableBytes { recv(connection.descriptor, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            answer += buffer[0..<count]
        }
        return String(decoding: answer, as: UTF8.self)
    }
}

/// One ensemble shared by the tests of a class (starting three JVMs costs seconds): a class keeps
/// `static let shared = SharedEnsemble()`, its tests call `try Self.shared.ensemble()` (started on first
/// use), and its `class func tearDown` calls `shared.stop()`.
public final class SharedEnsemble: @unchecked Sendable {
    private var started: ZooKeeperEnsemble?
    private let members: Int

    public init(members: Int = 3) { self.members = members }

    public func ensemble() throws -> ZooKeeperEnsemble {
        if let started { return started }
        let ensemble = try ZooKeeperEnsemble(members: members)
        started = ensemble
        return ensemble
    }

    public func stop() { started = nil }
}

extension TestDaemon {
    /// A batond on the ZooKeeper store `store` (zookeeper://HOSTS/CHROOT), returned once its ZooKeeper
    /// session is established (before that, every request would fail `storageFailure`).
    public static func zooKeeperSidecar(store: String, sessionTimeoutMilliseconds: Int, extra: [String] = [],
                                        logLevel: String? = nil, launcher: [String] = [],
                                        listensOnTCP: Bool = false) throws -> TestDaemon {
        var options = Options(listensOnTCP: listensOnTCP,
                              arguments: ["--store", store, "--zookeeper-session-timeout-ms", "\(sessionTimeoutMilliseconds)"] + extra)
        options.usesDataDirectory = false
        if let logLevel { options.logLevel = logLevel }
        options.launcher = launcher
        let daemon = try TestDaemon(options)
        let deadline = Date().addingTimeInterval(30)
        while !daemon.standardError.contains("ZooKeeper session established") {
            guard Date() < deadline else { throw TestSupportError.timedOut("no ZooKeeper session; log:\n\(daemon.standardError)") }
            usleep(20_000)
        }
        return daemon
    }
}
