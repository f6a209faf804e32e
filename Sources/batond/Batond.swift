import ArgumentParser
import BatonEngine
import BatonProtocol
import BatonRevision
import BatonServer
import BatonStore
import BatonZooKeeper
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct Batond: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batond",
        abstract: "The Baton sidecar: fair, crash-safe locks and a small namespace over a Unix socket.",
        discussion: """
            Listens on a Unix socket (created with mode 0600 unless --socket-mode says otherwise) and, \
            only with --listen, on TCP: TLS with --tls-cert and --tls-key (mutual TLS with \
            --tls-client-ca), or plain TCP only with --tcp-plaintext; every TCP client must also \
            authenticate with the token in --tcp-token-file. With --metrics, serves Prometheus metrics over HTTP. Logs go to standard error; one "ready" line says where it listens. \
            SIGTERM or SIGINT shuts down gracefully: sessions end, the socket file is removed, exit 0.

            Persistent nodes and the counters behind sequence numbers and fencing tokens are kept in \
            a write-ahead log with periodic snapshots in the data directory: --data-dir, else \
            $XDG_STATE_HOME/baton, else ~/.local/state/baton. --in-memory keeps nothing. Sessions and \
            ephemeral nodes never survive a restart. --fsync: always (every change synced before its \
            reply), batch (one sync per loop turn for all the changes in it; the default), none \
            (written, never synced: survives the daemon dying, not the machine).
            """,
        version: BatonRevision.version)

    @Option(name: .long, help: ArgumentHelp(
        "Unix socket path (at most \(Endpoint.unixPathBytesMax) bytes).",
        discussion: "Default: $BATON_SOCKET, else $XDG_RUNTIME_DIR/baton.sock, else /tmp/baton-$UID.sock.",
        valueName: "path"))
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("Permission bits of the socket file, in octal.", valueName: "octal"))
    var socketMode: String = "0600"

    @Option(name: .long, help: ArgumentHelp("Also listen on TCP, e.g. 127.0.0.1:7420 or [::1]:7420.", valueName: "host:port"))
    var listen: String?

    @Option(name: .customLong("tcp-token-file"), help: ArgumentHelp(
        "File holding the token TCP clients must authenticate with; required with --listen.",
        discussion: "The file must be readable by its owner only (mode 0600); its trailing line break is not part of the token.",
        valueName: "file"))
    var tcpTokenFile: String?

    @Option(name: .customLong("tls-cert"), help: ArgumentHelp(
        "Certificate chain (PEM) of the TCP listener: TCP speaks TLS 1.2 or later.", valueName: "file"))
    var tlsCertificateFile: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp("Private key (PEM) of --tls-cert.", valueName: "file"))
    var tlsKeyFile: String?

    @Option(name: .customLong("tls-client-ca"), help: ArgumentHelp(
        "Mutual TLS: TCP clients must present a certificate this CA (PEM) signed.",
        discussion: "The certificate's subject CN names the client in the logs.", valueName: "file"))
    var tlsClientCAFile: String?

    @Flag(name: .customLong("tcp-plaintext"), help: ArgumentHelp(
        "Serve --listen without TLS: the token and all data cross the network in clear.",
        discussion: "Only for loopback or a network that is already private and trusted."))
    var tcpPlaintext = false

    @Option(name: .long, help: ArgumentHelp(
        "Serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 127.0.0.1:9420.", valueName: "host:port"))
    var metrics: String?

    @Option(name: .customLong("metrics-socket"), help: ArgumentHelp(
        "Serve the same HTTP endpoint (/metrics, /healthz, /readyz) on this Unix socket, mode 0600.",
        discussion: "For a scraper on the same host (curl --unix-socket, a local agent): only the daemon's user and root reach it.",
        valueName: "path"))
    var metricsSocket: String?

    @Option(name: .customLong("metrics-token-file"), help: ArgumentHelp(
        "GET /metrics needs \"Authorization: Bearer TOKEN\" with the token in this file (mode 0600).",
        discussion: "For a scraper over the network (Prometheus: authorization.credentials_file). /healthz and /readyz stay open.",
        valueName: "file"))
    var metricsTokenFile: String?

    @Option(name: .long, help: ArgumentHelp(
        "Access rules: which users, groups and TCP tokens may do what under which paths; reloaded on SIGHUP.",
        discussion: "One rule a line: PREFIX PRINCIPAL PERMISSIONS, e.g. \"/locks group:ops read,lock,watch\" (Proto/PROTOCOL.md §17). Without it, whoever may connect may do everything.",
        valueName: "file"))
    var acl: String?

    @Option(name: .customLong("data-dir"), help: ArgumentHelp(
        "Directory of the write-ahead log and snapshots.",
        discussion: "Default: $XDG_STATE_HOME/baton, else ~/.local/state/baton.", valueName: "dir"))
    var dataDirectory: String?

    @Flag(name: .long, help: "Keep the namespace in memory only (nothing survives a restart).")
    var inMemory = false

    @Flag(name: .long, help: ArgumentHelp(
        "Start even if the data directory is damaged: cut the log at the damage and say what was dropped.",
        discussion: """
            Without it, damage a crash cannot cause (a bad record followed by valid ones, a damaged \
            segment header, a missing segment, a log shorter than a clean shutdown left it) stops batond \
            with an error naming the file and offset. --repair cuts the log there instead: the damaged \
            tail is kept as <segment>.<offset>.corrupt, later segments are renamed *.corrupt, and each cut \
            is logged at critical level. Records after the damage are lost (acknowledged ones included); \
            fencing tokens and sequence numbers still never go back (docs/STORAGE.md, "Repair").
            """))
    var repair = false

    @Option(name: .long, help: ArgumentHelp(
        "Where the namespace lives: embedded (the default) or zookeeper://HOST:PORT[,HOST:PORT...][/CHROOT].",
        discussion: """
            With zookeeper://, every sidecar pointed at the same ensemble and chroot shares one namespace \
            and one lock space (the chroot is created if missing); --data-dir and --fsync do not apply.
            """,
        valueName: "store"))
    var store: String = "embedded"

    @Option(name: .customLong("zookeeper-session-timeout-ms"), help: ArgumentHelp(
        "ZooKeeper session timeout asked of the ensemble (it clamps it to 2-20 ticks). A dead sidecar's locks are freed after it.",
        valueName: "n"))
    var zooKeeperSessionTimeoutMilliseconds: Int32 = 10_000

    @Option(name: .customLong("zookeeper-digest-file"), help: ArgumentHelp(
        "File holding USER:PASSWORD for ZooKeeper digest authentication; what Baton creates is then readable and writable by that identity only.",
        discussion: "The file must be readable by its owner only (mode 0600); its trailing line break is not part of the credentials.",
        valueName: "file"))
    var zooKeeperDigestFile: String?

    @Option(name: .long, help: ArgumentHelp("When to fsync the log: always, batch or none.", valueName: "policy"))
    var fsync: String = "batch"

    @Option(name: .customLong("snapshot-every-records"), help: ArgumentHelp("Snapshot after this many log records.", valueName: "n"))
    var snapshotEveryRecords: Int = 100_000

    @Option(name: .customLong("snapshot-every-log-bytes"), help: ArgumentHelp("Snapshot after this many bytes of log records.", valueName: "n"))
    var snapshotEveryLogBytes: Int = 64 * 1_048_576

    @Option(name: .customLong("session-timeout-min-ms"), help: ArgumentHelp("Shortest session timeout granted.", valueName: "n"))
    var sessionTimeoutMinimumMilliseconds: UInt32 = Limits.default.sessionTimeoutMillisecondsMin

    @Option(name: .customLong("session-timeout-max-ms"), help: ArgumentHelp("Longest session timeout granted.", valueName: "n"))
    var sessionTimeoutMaximumMilliseconds: UInt32 = Limits.default.sessionTimeoutMillisecondsMax

    @Option(name: .customLong("output-high-water-bytes"), help: ArgumentHelp(
        "Stop reading a client's requests while this many reply bytes wait for it to read.", valueName: "n"))
    var outputHighWaterBytes: Int = 1_048_576

    @Option(name: .customLong("write-stall-ms"), help: ArgumentHelp(
        "Disconnect a client that leaves its replies unread this long.", valueName: "n"))
    var writeStallMilliseconds: UInt64 = 30_000

    @Option(name: .customLong("frames-per-turn"), help: ArgumentHelp(
        "Frames of one connection handled before the others get a turn.", valueName: "n"))
    var framesPerTurn: Int = 64

    @Option(name: .customLong("hello-timeout-ms"), help: ArgumentHelp(
        "Close a connection that has not completed hello this long after it connected.", valueName: "n"))
    var helloTimeoutMilliseconds: UInt64 = AdmissionConfiguration().helloMilliseconds

    @Option(name: .customLong("authenticate-timeout-ms"), help: ArgumentHelp(
        "Close a TCP connection that has not authenticated this long after it connected.", valueName: "n"))
    var authenticateTimeoutMilliseconds: UInt64 = AdmissionConfiguration().authenticateMilliseconds

    @Option(name: .customLong("partial-frame-timeout-ms"), help: ArgumentHelp(
        "Close a connection that leaves a frame unfinished this long.", valueName: "n"))
    var partialFrameTimeoutMilliseconds: UInt64 = AdmissionConfiguration().partialFrameMilliseconds

    @Option(name: .customLong("idle-timeout-ms"), help: ArgumentHelp(
        "Close a connection that sends nothing this long (longer than --session-timeout-max-ms).", valueName: "n"))
    var idleTimeoutMilliseconds: UInt64 = AdmissionConfiguration().idleMilliseconds

    @Option(name: .customLong("unauthenticated-frame-bytes"), help: ArgumentHelp(
        "Largest frame a TCP connection may send before it authenticates.", valueName: "n"))
    var unauthenticatedFrameBytes: Int = AdmissionConfiguration().unauthenticatedFrameBytesMax

    @Option(name: .customLong("unauthenticated-connections-max"), help: ArgumentHelp(
        "TCP connections not yet authenticated; more are refused (Unix clients are not counted).", valueName: "n"))
    var unauthenticatedConnectionsMax: Int = AdmissionConfiguration().unauthenticatedConnectionsMax

    @Option(name: .customLong("input-budget-bytes"), help: ArgumentHelp(
        "Undecoded input bytes held for all connections together.", valueName: "n"))
    var inputBudgetBytes: Int = AdmissionConfiguration().inputBytesBufferedMax

    @Option(name: .customLong("output-budget-bytes"), help: ArgumentHelp(
        "Output bytes queued to all connections together.", valueName: "n"))
    var outputBudgetBytes: Int = AdmissionConfiguration().outputBytesBufferedMax

    @Option(name: .customLong("login-failures-before-throttle"), help: ArgumentHelp(
        "Failed TCP authentications from one address before its new connections are refused for a while.", valueName: "n"))
    var loginFailuresBeforeThrottle: Int = AdmissionConfiguration().loginFailuresBeforeThrottle

    @Option(name: .customLong("login-throttle-ms"), help: ArgumentHelp(
        "How long such an address is refused; doubled with each further failure, up to a minute.", valueName: "n"))
    var loginThrottleMilliseconds: UInt64 = AdmissionConfiguration().loginThrottleMilliseconds

    @Option(name: .customLong("nodes-per-session-max"), help: ArgumentHelp(
        "Nodes one session may have created that still exist (waiter nodes included).", valueName: "n"))
    var nodesPerSessionMax: Int = Limits.default.nodesPerSessionMax

    @Option(name: .customLong("data-bytes-per-session-max"), help: ArgumentHelp(
        "Data bytes of the nodes one session created that still exist.", valueName: "n"))
    var dataBytesPerSessionMax: Int = Limits.default.dataBytesPerSessionMax

    @Option(name: .customLong("watches-per-session-max"), help: ArgumentHelp("Watches one session may hold.", valueName: "n"))
    var watchesPerSessionMax: Int = Limits.default.watchesPerSessionMax

    @Option(name: .customLong("sessions-per-peer-max"), help: ArgumentHelp(
        "Sessions open at once per Unix uid or TCP address.", valueName: "n"))
    var sessionsPerPeerMax: Int = Limits.default.sessionsPerPeerMax

    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String = "info"

    // MARK: Operating batond (backup and restore, readiness, logs, configuration file)

    @Option(name: .long, help: ArgumentHelp(
        "Before starting, seed the (empty or missing) data directory from this backup file.",
        discussion: """
            The file is one `baton backup` wrote. batond checks it whole, refuses a data directory that \
            holds anything, restores, then starts serving as usual. Nodes, sequence numbers and the \
            fencing-token counter come back as they were when the backup was taken.
            """,
        valueName: "file"))
    var restore: String?

    @Option(name: .customLong("log-format"), help: ArgumentHelp(
        "text (key=value metadata) or json (one object per line).",
        discussion: """
            json: every line has time (RFC 3339 UTC), level, logger, source and message, then the \
            event's metadata as snake_case keys with string values (docs in deploy/README.md).
            """,
        valueName: "format"))
    var logFormat: String = "text"

    @Option(name: .customLong("config"), help: ArgumentHelp(
        "TOML file of settings: each key a long flag without the --; the command line overrides it.",
        discussion: "Example with every key: deploy/batond.toml.", valueName: "file"))
    var configurationFile: String?

    static func main() {
        do {
            let arguments = try ConfigurationFile.expand(Array(CommandLine.arguments.dropFirst())) { fromFile in
                do {
                    _ = try parseAsRoot(fromFile)
                } catch {
                    throw ServerError(message(for: error))
                }
            }
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch let error as ServerError {
            fail(error.message)
        } catch {
            if exitCode(for: error) == .success {
                print(fullMessage(for: error))
                terminate(0)
            }
            fail(message(for: error))
        }
    }

    /// Set by `--log-format json`: the last words are a JSON line too.
    nonisolated(unsafe) static var errorsAsJSON = false

    /// One line on standard error, exit status 1.
    static func fail(_ message: String) -> Never {
        if errorsAsJSON {
            JSONLogHandler.emit(level: .critical, message: message, label: "batond", source: "batond", metadata: [:])
            terminate(1)
        }
        let line = "batond: error: \(message)\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
        terminate(1)
    }

    func makeConfiguration() throws(ServerError) -> ServerConfiguration {
        guard let mode = UInt32(socketMode, radix: 8), mode & ~0o777 == 0 else {
            throw ServerError("--socket-mode must be octal permission bits such as 0600, not \(socketMode)")
        }
        guard sessionTimeoutMinimumMilliseconds > 0,
              sessionTimeoutMinimumMilliseconds <= sessionTimeoutMaximumMilliseconds else {
            throw ServerError("--session-timeout-min-ms must be positive and at most --session-timeout-max-ms")
        }
        guard let fsyncPolicy = FsyncPolicy(parsing: fsync) else {
            throw ServerError("--fsync must be always, batch or none, not \(fsync)")
        }
        guard snapshotEveryRecords > 0, snapshotEveryLogBytes > 0 else {
            throw ServerError("--snapshot-every-records and --snapshot-every-log-bytes must be positive")
        }
        guard outputHighWaterBytes > 0, writeStallMilliseconds > 0, framesPerTurn > 0 else {
            throw ServerError("--output-high-water-bytes, --write-stall-ms and --frames-per-turn must be positive")
        }
        let environment = processEnvironment()
        let path = socket ?? Endpoint.defaultSocketPath(environment: environment, userID: UInt32(getuid()))
        var engine = EngineConfiguration()
        engine.serverName = BatonRevision.serverName
        engine.limits.sessionTimeoutMillisecondsMin = sessionTimeoutMinimumMilliseconds
        engine.limits.sessionTimeoutMillisecondsMax = sessionTimeoutMaximumMilliseconds
        guard nodesPerSessionMax > 0, watchesPerSessionMax > 0, sessionsPerPeerMax > 0 else {
            throw ServerError("--nodes-per-session-max, --watches-per-session-max and --sessions-per-peer-max must be positive")
        }
        guard dataBytesPerSessionMax >= engine.limits.dataBytesMax else {
            throw ServerError("--data-bytes-per-session-max must be at least dataBytesMax (\(engine.limits.dataBytesMax)): one node of the largest data must fit")
        }
        engine.limits.nodesPerSessionMax = nodesPerSessionMax
        engine.limits.dataBytesPerSessionMax = dataBytesPerSessionMax
        engine.limits.watchesPerSessionMax = watchesPerSessionMax
        engine.limits.sessionsPerPeerMax = sessionsPerPeerMax
        engine.defaultSessionTimeoutMilliseconds = min(max(engine.defaultSessionTimeoutMilliseconds, sessionTimeoutMinimumMilliseconds),
                                                       sessionTimeoutMaximumMilliseconds)
        var configuration = ServerConfiguration(socketPath: path, engine: engine)
        configuration.revision = BatonRevision.current
        configuration.socketMode = mode
        configuration.outputBytesHighWater = outputHighWaterBytes
        configuration.writeStallMillisecondsMax = writeStallMilliseconds
        configuration.framesPerTurnMax = framesPerTurn
        var admission = AdmissionConfiguration()
        admission.helloMilliseconds = helloTimeoutMilliseconds
        admission.authenticateMilliseconds = authenticateTimeoutMilliseconds
        admission.partialFrameMilliseconds = partialFrameTimeoutMilliseconds
        admission.idleMilliseconds = idleTimeoutMilliseconds
        admission.unauthenticatedFrameBytesMax = unauthenticatedFrameBytes
        admission.unauthenticatedConnectionsMax = unauthenticatedConnectionsMax
        admission.inputBytesBufferedMax = inputBudgetBytes
        admission.outputBytesBufferedMax = outputBudgetBytes
        admission.loginFailuresBeforeThrottle = loginFailuresBeforeThrottle
        admission.loginThrottleMilliseconds = loginThrottleMilliseconds
        admission.loginThrottleMillisecondsMax = max(60_000, loginThrottleMilliseconds)
        configuration.admission = admission
        if let passed = try Systemd.passedListener(environment: environment) {
            // Socket activation: the .socket unit bound the socket and owns its file and mode.
            if let socket, socket != passed.path {
                throw ServerError("--socket \(socket) is not the socket systemd passed (\(passed.path)); drop --socket or make them agree")
            }
            configuration.socketPath = passed.path
            configuration.inheritedUnixListener = passed.descriptor
        }
        if let zooKeeper = try zooKeeperConfiguration() {
            guard dataDirectory == nil, !inMemory else {
                throw ServerError("--store zookeeper:// keeps the namespace in ZooKeeper: --data-dir and --in-memory do not apply")
            }
            configuration.zooKeeper = zooKeeper
        } else if inMemory {
            guard dataDirectory == nil else { throw ServerError("--in-memory and --data-dir exclude each other") }
            guard !repair else { throw ServerError("--repair needs a data directory, not --in-memory") }
        } else {
            guard let directory = dataDirectory ?? Batond.defaultDataDirectory(environment: environment) else {
                throw ServerError("no data directory: set --data-dir (or $XDG_STATE_HOME or $HOME), or run --in-memory")
            }
            var durability = DurabilityConfiguration(dataDirectory: directory, store: StoreConfiguration(fsyncPolicy: fsyncPolicy))
            durability.snapshotEveryRecords = snapshotEveryRecords
            durability.snapshotEveryLogBytes = snapshotEveryLogBytes
            durability.repair = repair
            configuration.durability = durability
        }
        if let listen {
            guard let endpoint = Endpoint.parseTCP(listen) else {
                throw ServerError("--listen must be HOST:PORT (IPv6 as [::1]:PORT), not \(listen)")
            }
            configuration.tcpEndpoint = endpoint
            // TCP is off unless asked for, and then requires authentication.
            // The tokens may also be named in the access rules (token lines, PROTOCOL.md §17).
            guard tcpTokenFile != nil || acl != nil else {
                throw ServerError("--listen needs --tcp-token-file FILE: TCP clients must authenticate with the token in that file (mode 0600)")
            }
            if let tcpTokenFile { configuration.engine.tcpAuthenticationToken = try TokenFile.load(path: tcpTokenFile) }
            configuration.tls = try tlsConfiguration()
        } else if tcpTokenFile != nil {
            throw ServerError("--tcp-token-file is used only with --listen")
        } else if tlsCertificateFile != nil || tlsKeyFile != nil || tlsClientCAFile != nil || tcpPlaintext {
            throw ServerError("--tls-cert, --tls-key, --tls-client-ca and --tcp-plaintext are used only with --listen")
        }
        if let metrics {
            guard let endpoint = Endpoint.parseTCP(metrics) else {
                throw ServerError("--metrics must be HOST:PORT (IPv6 as [::1]:PORT), not \(metrics)")
            }
            configuration.metricsEndpoint = endpoint
        }
        configuration.metricsSocketPath = metricsSocket
        if let metricsTokenFile {
            guard metrics != nil || metricsSocket != nil else {
                throw ServerError("--metrics-token-file is used only with --metrics or --metrics-socket")
            }
            configuration.metricsBearerToken = try TokenFile.load(path: metricsTokenFile, what: "metrics token")
        }
        configuration.accessRulesPath = acl
        return configuration
    }

    /// TLS for --listen, or nil with the explicit --tcp-plaintext: TCP is never plain by omission.
    func tlsConfiguration() throws(ServerError) -> TLSServerConfiguration? {
        switch (tlsCertificateFile, tlsKeyFile) {
        case (let certificate?, let key?):
            guard !tcpPlaintext else { throw ServerError("--tcp-plaintext and --tls-cert exclude each other") }
            return TLSServerConfiguration(certificateFile: certificate, keyFile: key, clientCAFile: tlsClientCAFile)
        case (nil, nil):
            guard tlsClientCAFile == nil else { throw ServerError("--tls-client-ca needs --tls-cert and --tls-key") }
            guard tcpPlaintext else {
                throw ServerError("--listen needs TLS (--tls-cert FILE --tls-key FILE) or, to send the token and all data "
                    + "in clear, an explicit --tcp-plaintext")
            }
            return nil
        default:
            throw ServerError("--tls-cert and --tls-key go together")
        }
    }

    /// nil for the embedded store; the ZooKeeper client's configuration for `zookeeper://`.
    func zooKeeperConfiguration() throws(ServerError) -> ZooKeeperConfiguration? {
        if store == "embedded" {
            guard zooKeeperDigestFile == nil else { throw ServerError("--zookeeper-digest-file is used only with --store zookeeper://") }
            return nil
        }
        let address: ZooKeeperAddress
        do {
            address = try ZooKeeperAddress(parsing: store)
        } catch {
            throw ServerError("--store must be embedded or zookeeper://HOST:PORT[,HOST:PORT...][/CHROOT], not \(store): \(error.message)")
        }
        guard zooKeeperSessionTimeoutMilliseconds > 0 else { throw ServerError("--zookeeper-session-timeout-ms must be positive") }
        var digest: String?
        if let zooKeeperDigestFile {
            let bytes = try TokenFile.load(path: zooKeeperDigestFile, what: "ZooKeeper digest")
            let text = String(decoding: bytes, as: UTF8.self)
            guard let colon = text.firstIndex(of: ":"), colon != text.startIndex else {
                throw ServerError("\(zooKeeperDigestFile) must hold USER:PASSWORD")
            }
            digest = text
        }
        return ZooKeeperConfiguration(address: address, sessionTimeoutMilliseconds: zooKeeperSessionTimeoutMilliseconds, digest: digest)
    }

    /// `$XDG_STATE_HOME/baton`, else `$HOME/.local/state/baton` (the XDG base directory rules).
    static func defaultDataDirectory(environment: [String: String]) -> String? {
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") { return state + "/baton" }
        if let home = environment["HOME"], !home.isEmpty { return home + "/.local/state/baton" }
        return nil
    }

    func run() throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ServerError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        guard logFormat == "text" || logFormat == "json" else {
            throw ServerError("--log-format must be text or json, not \(logFormat)")
        }
        if logFormat == "json" { Batond.errorsAsJSON = true }
        let configuration = try makeConfiguration()
        var logger = logFormat == "json"
            ? Logger(label: "batond", factory: { label in JSONLogHandler(label: label) })
            : Logger(label: "batond", factory: { label in StreamLogHandler.standardError(label: label) })
        logger.logLevel = level
        if let restore {
            guard let durability = configuration.durability else { throw ServerError("--restore needs a data directory, not --in-memory") }
            do {
                try Store.restore(backup: restore, into: durability.dataDirectory, logger: logger)
            } catch {
                throw ServerError("cannot restore \(restore): \(error)")
            }
        }
        // Raised before listening; reported once listening, so a refusal to start stays one line.
        let openFiles = OpenFileLimit.raise()
        let server = Server(configuration: configuration, logger: logger)
        let environment = processEnvironment()
        try server.run { addresses in
            openFiles.log(connectionsMax: configuration.limits.connectionsMax, logger: logger)
            // Type=notify: systemd starts dependent units only now, when clients can be served.
            if let failure = Systemd.notify("READY=1\nMAINPID=\(getpid())\nSTATUS=serving on \(addresses.socketPath)", environment: environment) {
                logger.warning("cannot notify systemd of readiness", metadata: ["error": "\(failure)"])
            }
        }
    }
}

/// The process environment as a dictionary (Foundation's ProcessInfo would pull in Foundation).
private func processEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var entry = environ
    while let pointer = entry.pointee {
        let text = String(cString: pointer)
        if let equals = text.firstIndex(of: "=") {
            result[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        entry += 1
    }
    return result
}

#if canImport(Glibc)
private func terminate(_ status: Int32) -> Never { Glibc.exit(status) }
#else
private func terminate(_ status: Int32) -> Never { Darwin.exit(status) }
#endif
