import BatonEngine
import BatonProtocol
import BatonStore

/// When a request was handed to the engine (`ServerLoop.requestInHand`).
struct RequestStamp {
    let connection: ConnectionID
    let requestID: UInt32
    let arrived: UInt64
}

/// Latency histograms (request service time, acquire wait) and readiness, for the metrics endpoint.
/// Everything here runs on the loop thread: stamps and histograms are plain values, no locks.
extension ServerLoop {
    /// A request is about to be handed to the engine: most are answered while it handles them, so
    /// the stamp waits in `requestInHand` and goes into `requestArrivals` only if the request is
    /// still unanswered once its outputs are routed (`requestRouted`). `arrived` is when the read
    /// that brought it was decoded: one clock read for a whole pipelined batch.
    func requestArrived(_ requestID: UInt32, on connection: ConnectionID, at arrived: UInt64) {
        requestInHand = RequestStamp(connection: connection, requestID: requestID, arrived: arrived)
    }

    /// The request in hand has been handled and its outputs routed: if it was not answered (an
    /// acquire that waits), its stamp is kept until its reply.
    func requestRouted() {
        guard let stamp = requestInHand else { return }
        requestInHand = nil
        requestArrivals[stamp.connection, default: [:]][stamp.requestID] = stamp.arrived
    }

    /// A reply is on its way: a granted acquire records its wait now; other replies wait for the
    /// commit barrier of this turn (`recordServiceTimes`), which they wait for too. True if it answers
    /// a request that waited (an acquire granted, timed out or cancelled), not the one in hand.
    @discardableResult
    func replyRouted(_ reply: Reply, to connection: ConnectionID) -> Bool {
        let arrived: UInt64
        let waited: Bool
        if let stamp = requestInHand, stamp.connection == connection, stamp.requestID == reply.requestID {
            requestInHand = nil
            arrived = stamp.arrived
            waited = false
        } else if !requestArrivals.isEmpty, let stamped = requestArrivals[connection]?.removeValue(forKey: reply.requestID) {
            // The connection's table stays, emptied, until the connection goes (`release`): a
            // client that waits again (every contended acquire) reuses it instead of allocating one.
            arrived = stamped
            waited = true
        } else {
            return false
        }
        if reply.opcode == .acquire {
            // Granted now: by this turn's clock (the grant follows from what the turn read, a
            // release or a close; a clock read per grant was ~0.2 % of a pair).
            if case .success = reply.result { counters.acquireWait.record(nanoseconds: turnTime().arrived &- arrived) }
        } else {
            repliesAwaitingCommit.append(arrived)
        }
        return waited
    }

    /// After the commit barrier: the replies of this turn leave now.
    func recordServiceTimes() {
        guard !repliesAwaitingCommit.isEmpty else { return }
        let now = LatencyHistogram.now()
        // Popped, in any order (a histogram): the bulk `removeAll(keepingCapacity:)` went through the
        // generic `replaceSubrange` (~80 instructions a turn, callgrind).
        while let arrived = repliesAwaitingCommit.popLast() { counters.requestServiceTime.record(nanoseconds: now &- arrived) }
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
