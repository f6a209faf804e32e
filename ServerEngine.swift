import BatonEngine
import BatonProtocol

/// What the shell needs from the state machine. `Engine` is the real one; the protocol exists so a
/// transport test can drive the shell with a stand-in engine.
public protocol ServerEngine: AnyObject {
    func connectionOpened(_ connection: ConnectionID, transport: TransportKind, now: Time) -> Bool
    func handle(_ request: Request, requestID: UInt32, from connection: ConnectionID, now: Time)
    func decodeFailed(_ failure: DecodeFailure, from connection: ConnectionID, now: Time)
    func connectionClosed(_ connection: ConnectionID, now: Time)
    func tick(now: Time)
    var nextDeadlineMilliseconds: UInt64? { get }
    func takeOutputs() -> [EngineOutput]
}

extension Engine: ServerEngine {}
