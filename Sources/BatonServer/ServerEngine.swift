import BatonEngine
import BatonProtocol

/// What the shell needs from the state machine. `Engine` is the real one; the protocol exists so a
/// transport test can drive the shell with a stand-in engine.
public protocol ServerEngine: AnyObject {
    func connectionOpened(_ connection: ConnectionID, transport: TransportKind, now: Time) -> Bool
    /// Who is behind an accepted connection (`uid:N`, `tcp:ADDRESS`), for per-peer quotas.
    func connectionIdentified(_ connection: ConnectionID, as identity: String)
    func handle(_ request: Request, requestID: UInt32, from connection: ConnectionID, now: Time)
    func decodeFailed(_ failure: DecodeFailure, from connection: ConnectionID, now: Time)
    func connectionClosed(_ connection: ConnectionID, now: Time)
    /// Frames from `connection` arrived but wait unread (the shell bounds its work per loop turn):
    /// liveness counts what the client sent, so its session must not expire meanwhile.
    func inputWaiting(on connection: ConnectionID, now: Time)
    func tick(now: Time)
    var nextDeadlineMilliseconds: UInt64? { get }
    func takeOutputs() -> [EngineOutput]
    /// The same, swapped into `taken` (empty), so a shell that hands back one array allocates nothing.
    func takeOutputs(into taken: inout [EngineOutput])
    /// The daemon is stopping: answer what waits, say goodbye, end every session, close every connection.
    func shutdown(now: Time)
}

extension ServerEngine {
    public func connectionIdentified(_ connection: ConnectionID, as identity: String) {}
    public func takeOutputs(into taken: inout [EngineOutput]) { taken = takeOutputs() }
}

extension Engine: ServerEngine {}
