import BatonEngine
import BatonProtocol
import BatonStore

/// Latency histograms (request service time, acquire wait) and readiness, for the metrics endpoint.
/// Everything here runs on the loop thread: stamps and histograms are plain values, no locks.
extension ServerLoop {
    /// A request was handed to the engine.
    func requestArrived(_ requestID: UInt32, on connection: ConnectionID) {
        requestArrivals[connection, default: [:]][requestID] = LatencyHistogram.now()
    }

    /// A reply is on its way: a granted acquire records its wait now; other replies wait for the
    /// commit barrier of this turn (`recordServiceTimes`), which they wait for too.
    func replyRouted(_ reply: Reply, to connection: ConnectionID) {
        guard let arrived = requestArrivals[connection]?.removeValue(forKey: reply.requestID) else { return }
        // An idle connection keeps no table (its storage, ~100 bytes, for each of 10,000 sessions).
        if requestArrivals[connection]!.isEmpty { requestArrivals[connection] = nil }
        if reply.opcode == .acquire {
            if case .success = reply.result { counters.acquireWait.record(nanoseconds: LatencyHistogram.now() - arrived) }
        } else {
            repliesAwaitingCommit.append(arrived)
        }
    }

    /// After the commit barrier: the replies of this turn leave now.
    func recordServiceTimes() {
        guard !repliesAwaitingCommit.isEmpty else { return }
        let now = LatencyHistogram.now()
        for arrived in repliesAwaitingCommit { counters.requestServiceTime.record(nanoseconds: now &- arrived) }
        repliesAwaitingCommit.removeAll(keepingCapacity: true)
    }

    /// Why the daemon should not get traffic now (`GET /readyz` answers 503 with it), or nil when
    /// it should: it is listening, not stopping, and its log can be written.
    var notReadyReason: String? {
        if isShuttingDown { return "shutting down" }
        if engine == nil { return "starting" }
        if let storageFailure { return "the write-ahead log cannot be written (\(storageFailure)); writes are refused" }
        return nil
    }
}
