import BatonEngine
import BatonProtocol
import BatonStore
import BatonZooKeeper

/// What `batond` (or a test) asks the server for. Everything else is decided by the engine's limits.
public struct ServerConfiguration: Sendable {
    /// The Unix socket to listen on; always present (the sidecar's main door).
    public var socketPath: String
    /// Permission bits of the socket file; 0600 lets only the daemon's user connect.
    public var socketMode: UInt32 = 0o600
    /// Listen on TCP too (`Endpoint.tcp`), only when asked.
    public var tcpEndpoint: Endpoint?
    /// TLS on the TCP listener (ServerLoop+TLS.swift); nil serves plain TCP.
    public var tls: TLSServerConfiguration?
    /// Serve `GET /metrics` (Prometheus text format) over HTTP on this `Endpoint.tcp`, only when asked.
    public var metricsEndpoint: Endpoint?
    /// Serve the same HTTP endpoint on this Unix socket (mode 0600), only when asked (`--metrics-socket`).
    public var metricsSocketPath: String?
    /// `GET /metrics` on either endpoint needs `Authorization: Bearer` with this token (`--metrics-token-file`).
    public var metricsBearerToken: [UInt8]?
    /// The git revision of this build, for `baton_build_info` (batond gives `BatonRevision.current`).
    public var revision = "unknown"
    public var engine: EngineConfiguration
    /// The access rule file (`--acl`, PROTOCOL.md §17), reloaded on SIGHUP; nil: no access control.
    public var accessRulesPath: String?
    /// Size of the loop's one read buffer, shared by every connection (a read is consumed before the
    /// next); a frame split across reads is gathered in its connection, up to `frameBytesMax`.
    public var readBufferBytes: Int = 65_536
    /// Frames of one connection handled per loop turn; the rest wait (reading stopped) for the next
    /// turn, so one pipelining client cannot hold the loop while others and the timers wait.
    public var framesPerTurnMax: Int = 64
    /// A connection whose queued output reaches this many bytes is not read (its requests wait)
    /// until the peer has read it down to half (backpressure, PROTOCOL.md §8).
    public var outputBytesHighWater: Int = 1_048_576
    /// A peer that leaves output unread this long, no byte of it taken, is disconnected (§8).
    public var writeStallMillisecondsMax: UInt64 = 30_000
    /// Deadlines, budgets and login throttling (Admission.swift, PROTOCOL.md §8).
    public var admission = AdmissionConfiguration()
    /// How long a connection being closed may take to drain its queued replies before it is cut.
    public var closeLingerMilliseconds: UInt64 = 5_000
    /// How long shutdown waits for connections to drain before closing them outright.
    public var shutdownGraceMilliseconds: UInt64 = 2_000
    /// Install SIGTERM/SIGINT handlers that shut down gracefully (the daemon); off for in-process servers.
    public var handlesSignals: Bool = true
    /// Where the namespace is made durable; nil keeps it in memory only.
    public var durability: DurabilityConfiguration?
    /// Serve the namespace and locks from a ZooKeeper ensemble (ZooKeeperDriver.swift) instead of the
    /// embedded store; then `durability` must be nil (ZooKeeper keeps the data).
    public var zooKeeper: ZooKeeperConfiguration?
    /// A Unix socket already bound to `socketPath` and listening, handed over by systemd socket
    /// activation (`LISTEN_FDS`): served as it is, its mode left alone, its file left in place at
    /// shutdown (the .socket unit owns it).
    public var inheritedUnixListener: Int32?

    public init(socketPath: String, engine: EngineConfiguration = EngineConfiguration()) {
        self.socketPath = socketPath
        self.engine = engine
    }

    public var limits: Limits { engine.limits }
}

/// The TCP listener's certificate (PEM files) and, for mutual TLS, the CA its clients' certificates
/// must chain to (`batond --tls-cert --tls-key [--tls-client-ca]`).
public struct TLSServerConfiguration: Sendable, Equatable {
    public var certificateFile: String
    public var keyFile: String
    /// Set: every TCP client must present a certificate this CA signed; its subject CN is the
    /// connection's `tlsPeerName`.
    public var clientCAFile: String?

    public init(certificateFile: String, keyFile: String, clientCAFile: String? = nil) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
    }
}

/// Where a started server listens.
public struct ListeningAddresses: Sendable, Equatable {
    public var socketPath: String
    /// The bound TCP port (the real one when port 0 was asked), nil without TCP.
    public var tcpPort: UInt16?
    /// The bound port of the metrics endpoint, nil without one.
    public var metricsPort: UInt16?
}

/// The write-ahead log and snapshots of the embedded store.
public struct DurabilityConfiguration: Sendable {
    public var dataDirectory: String
    /// Includes the fsync policy (`--fsync`).
    public var store: StoreConfiguration
    /// Take a snapshot once this many records were logged since the last one...
    public var snapshotEveryRecords: Int = 100_000
    /// ...or once the records logged since the last one add up to this many bytes.
    public var snapshotEveryLogBytes: Int = 64 * 1_048_576
    /// Start even if the data directory is damaged: cut the log at the damage, set the rest aside
    /// and say what was dropped (`batond --repair`, docs/STORAGE.md, "Repair").
    public var repair: Bool = false
    /// While the log cannot be written (a full disk), how often it is retried.
    public var storageRetryMilliseconds: UInt64 = 1_000

    public init(dataDirectory: String, store: StoreConfiguration = StoreConfiguration()) {
        self.dataDirectory = dataDirectory
        self.store = store
    }
}
