/// A log record or snapshot that cannot be applied: recovery stops with this.
public struct RecoveryError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "recovery failed: \(message)" }
}
