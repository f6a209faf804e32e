import BatonEngine
import BatonProtocol
import Dispatch
import Logging

/// The Baton daemon's server: listeners, connections and timers on one libuv loop, driving the
/// engine. `batond` calls `run` on its main thread; tests may `start` it on a thread of its own.
///
///     let server = Server(configuration: ServerConfiguration(socketPath: path), logger: logger)
///     try server.run()   // returns after SIGTERM/SIGINT (or `stop()`) once everything is closed
public final class Server: @unchecked Sendable {
    public let configuration: ServerConfiguration
    private let logger: Logger
    /// nil: the real engine, recovered from the data directory when `durability` is set.
    private let makeEngine: (@Sendable (Time) -> any ServerEngine)?
    private let mailbox = Mailbox()
    private let lock = Lock()
    private var hasRun = false
    private let finished = DispatchSemaphore(value: 0)

    public init(configuration: ServerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.makeEngine = nil
    }

    /// A server driving another engine (a stand-in for transport tests), in memory only.
    /// `makeEngine` is called once, on the loop thread, with the time the loop starts.
    public init(configuration: ServerConfiguration, logger: Logger,
                makeEngine: @escaping @Sendable (Time) -> any ServerEngine) {
        precondition(configuration.durability == nil, "a stand-in engine runs in memory only")
        self.configuration = configuration
        self.logger = logger
        self.makeEngine = makeEngine
    }

    /// Listens, recovers the store (if durable), calls `onReady`, and runs the loop on the calling
    /// thread until shutdown. Throws before running when it cannot listen or recover, and after
    /// running when it stopped because the write-ahead log failed. Call at most once.
    public func run(onReady: (ListeningAddresses) -> Void = { _ in }) throws(ServerError) {
        lock.withLock {
            precondition(!hasRun, "a Server runs once")
            hasRun = true
        }
        defer { finished.signal() }
        let loop = ServerLoop(configuration: configuration, logger: logger, mailbox: mailbox, makeEngine: makeEngine)
        try loop.run(onReady: onReady)
    }

    /// Runs the server on a thread of its own; returns once it listens (or throws why it cannot).
    public func start() throws(ServerError) -> ListeningAddresses {
        let outcome = StartOutcome()
        let thread = Thread(name: "batond-loop") { [self] in
            do throws(ServerError) {
                try run { addresses in outcome.settle(.success(addresses)) }
            } catch {
                outcome.settle(.failure(error))
            }
        }
        thread.start()
        return try outcome.wait().get()
    }

    /// Asks the loop to shut down gracefully; safe from any thread, any number of times.
    public func stop() {
        mailbox.post(.stop)
    }

    /// Blocks until `run` has returned.
    public func waitUntilStopped() {
        finished.wait()
        finished.signal()
    }
}

/// The result of `start`, handed from the loop thread to the caller.
private final class StartOutcome: @unchecked Sendable {
    private let lock = Lock()
    private var result: Result<ListeningAddresses, ServerError>?
    private let settled = DispatchSemaphore(value: 0)

    func settle(_ value: Result<ListeningAddresses, ServerError>) {
        let first = lock.withLock { () -> Bool in
            guard result == nil else { return false }
            result = value
            return true
        }
        if first { settled.signal() }
    }

    func wait() -> Result<ListeningAddresses, ServerError> {
        settled.wait()
        return lock.withLock { result! }
    }
}
