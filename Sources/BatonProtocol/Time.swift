/// The time input of the pure cores: they never read a clock themselves.
/// `monotonicMilliseconds` drives deadlines (session expiry, wait timeouts, leases);
/// `wallMilliseconds` only stamps node ctime/mtime.
public struct Time: Sendable, Equatable {
    public var monotonicMilliseconds: UInt64
    public var wallMilliseconds: UInt64
    public init(monotonicMilliseconds: UInt64, wallMilliseconds: UInt64) {
        self.monotonicMilliseconds = monotonicMilliseconds
        self.wallMilliseconds = wallMilliseconds
    }
    /// A test clock: both readings equal.
    public init(milliseconds: UInt64) {
        self.init(monotonicMilliseconds: milliseconds, wallMilliseconds: milliseconds)
    }
    public func advanced(by milliseconds: UInt64) -> Time {
        Time(monotonicMilliseconds: monotonicMilliseconds + milliseconds, wallMilliseconds: wallMilliseconds + milliseconds)
    }
}
