import BatonProtocol

/// The server's view of a transport connection; the engine never sees a socket.
public typealias ConnectionID = UInt64

public enum TransportKind: Sendable, Equatable {
    case unix
    case tcp
}

/// What the engine asks its shell to do, in order.
public enum EngineOutput: Sendable, Equatable {
    /// Send a frame to a connection.
    case send(ConnectionID, ServerMessage)
    /// Close a connection after flushing what was queued to it.
    case close(ConnectionID)
    /// Append a record to the write-ahead log; replies queued after it wait until it is durable.
    case persist([UInt8])
}

public struct EngineConfiguration: Sendable {
    public var limits: Limits = .default
    public var serverName: String = "batond"
    /// Session timeout used when a client asks for 0.
    public var defaultSessionTimeoutMilliseconds: UInt32 = 10_000
    /// An empty container is deleted once it has been empty this long (ZooKeeper sweeps them too),
    /// so a lock taken and released in a loop does not log a create and a delete every time.
    public var containerGraceMilliseconds: UInt64 = 10_000
    public init() {}
}

/// The state machine the server drives: it takes decoded requests, connection events and the time,
/// and produces outputs. Synchronous, single-threaded, no I/O, no clock.
public final class Engine {
    public let configuration: EngineConfiguration

    public init(configuration: EngineConfiguration, now: Time) {
        self.configuration = configuration
        fatalError("Engine is being written")
    }

    /// A new connection; false if the connection limit is reached (the server sends
    /// `tooManyConnections` and closes it: the engine queues that output itself).
    public func connectionOpened(_ connection: ConnectionID, transport: TransportKind, now: Time) -> Bool {
        fatalError("Engine is being written")
    }

    public func handle(_ request: Request, requestID: UInt32, from connection: ConnectionID, now: Time) {
        fatalError("Engine is being written")
    }

    /// A frame on `connection` could not be decoded: reply with the error, close if it says so.
    public func decodeFailed(_ failure: DecodeFailure, from connection: ConnectionID, now: Time) {
        fatalError("Engine is being written")
    }

    /// The transport went away (EOF, error, or the server dropped a slow reader).
    public func connectionClosed(_ connection: ConnectionID, now: Time) {
        fatalError("Engine is being written")
    }

    /// Runs deadlines that are due: session expiry, lock wait timeouts, leases, container sweeps.
    public func tick(now: Time) {
        fatalError("Engine is being written")
    }

    /// The earliest monotonic time at which `tick` has work, or nil.
    public var nextDeadlineMilliseconds: UInt64? { fatalError("Engine is being written") }

    /// Outputs produced since the last call, in order.
    public func takeOutputs() -> [EngineOutput] {
        fatalError("Engine is being written")
    }
}
