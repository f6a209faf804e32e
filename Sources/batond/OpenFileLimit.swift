import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every connection is a file descriptor, and the usual soft limit (1,024) would refuse clients long
/// before `connectionsMax`: at start batond raises its soft limit to the hard limit, and says so.
struct OpenFileLimit {
    /// Descriptors batond needs besides connections: listeners, the loop's own, the log and snapshots.
    static let descriptorsReserved = 64

    var softBefore: UInt64
    var soft: UInt64
    var hard: UInt64
    /// Why reading or raising the limit failed, if it did.
    var failure: String?

    /// Raises the soft limit to the hard one (nothing is logged yet: see `log`).
    static func raise() -> OpenFileLimit {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else {
            return OpenFileLimit(softBefore: 0, soft: 0, hard: 0, failure: "getrlimit failed with errno \(errno)")
        }
        var result = OpenFileLimit(softBefore: UInt64(limit.rlim_cur), soft: UInt64(limit.rlim_cur),
                                   hard: UInt64(limit.rlim_max), failure: nil)
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 {
                result.soft = UInt64(raised.rlim_cur)
            } else {
                result.failure = "setrlimit failed with errno \(errno)"
            }
        }
        return result
    }

    /// Logs the limit, and a warning when it leaves fewer descriptors than `connectionsMax` needs.
    func log(connectionsMax: Int, logger: Logger) {
        if let failure {
            logger.warning("cannot raise the open-file limit", metadata: ["error": "\(failure)", "soft": "\(soft)", "hard": "\(hard)"])
            if soft == 0 { return }
        }
        logger.info("open-file limit", metadata: ["soft_before": "\(Self.describe(softBefore))", "soft": "\(Self.describe(soft))",
                                                  "hard": "\(Self.describe(hard))"])
        let needed = UInt64(connectionsMax + Self.descriptorsReserved)
        guard soft < needed else { return }
        let served = soft > UInt64(Self.descriptorsReserved) ? soft - UInt64(Self.descriptorsReserved) : 0
        logger.warning("""
            open-file limit \(soft) is below the \(needed) descriptors that \(connectionsMax) connections need: \
            clients beyond about \(served) connections will be refused; raise the hard limit \
            (ulimit -Hn, or LimitNOFILE= in a systemd unit)
            """, metadata: ["soft": "\(soft)", "connections_max": "\(connectionsMax)"])
    }

    private static func describe(_ value: UInt64) -> String {
        value == UInt64(rlim_t.max) ? "unlimited" : "\(value)"
    }

    #if canImport(Glibc)
    private static var resource: __rlimit_resource_t { __rlimit_resource_t(RLIMIT_NOFILE.rawValue) }
    #else
    private static var resource: Int32 { RLIMIT_NOFILE }
    #endif
}
