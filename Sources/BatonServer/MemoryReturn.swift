#if canImport(Glibc)
import Glibc
#endif

/// When batond hands freed heap back to the system. glibc keeps memory freed by closed connections
/// (their input buffers, say) for reuse, so after thousands of connections come and go the resident
/// size stays at its peak. `malloc_trim(0)` returns it; it costs time in proportion to the heap, so
/// it runs only once at least as many connections closed since the last trim as are open now (and
/// at least `closesMin`): trims are amortised over the closes, a burst of N closes triggers about
/// log2(N) of them, and steady small churn one per `closesMin` closes. Pure: the loop counts closes
/// and asks after each turn (`ServerLoop.checkTurn`).
struct MemoryReturn {
    static let closesMin = 64
    private(set) var closesSinceTrim = 0
    private(set) var trims = 0

    mutating func connectionClosed() { closesSinceTrim += 1 }

    /// Whether to trim now, with `openConnections` left; counts the trim when it says yes.
    mutating func trimIsDue(openConnections: Int) -> Bool {
        guard closesSinceTrim >= max(Self.closesMin, openConnections) else { return false }
        closesSinceTrim = 0
        trims += 1
        return true
    }

    /// Returns free heap to the system where the C library can (glibc's `malloc_trim`, looked up
    /// at run time: Swift's Glibc module does not import <malloc.h>); elsewhere nothing to do.
    static func trim() {
        _ = mallocTrim?(0)
    }

    private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        #else
        return nil
        #endif
    }()
}
