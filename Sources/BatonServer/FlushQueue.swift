/// The connections a loop turn writes to (`ServerLoop.flushTurn`), in the order it writes them:
/// those holding the answer to a request that waited (a granted acquire, most often) first, then
/// the others, each group in the order its connections got output.
///
/// Why: with many clients on one lock the critical path is release -> grant -> the next holder's
/// release. Written first, the grantee's reply wakes its client while the server is still writing
/// the releaser's (whose client only queues its next acquire): more grants/s at 16 clients on one
/// lock, and a lower p99 wait (BENCHMARKS.md, session 7, shell). Only the order across connections changes: a connection's
/// bytes still leave in one write, in the order they were encoded, and PROTOCOL.md §4.4 promises no
/// order across connections.
struct FlushQueue {
    /// Where a connection is queued (`Connection.flushRank`).
    enum Rank: UInt8 {
        case none
        /// In `others`.
        case other
        /// In `answers` (and maybe still in `others`, skipped there: it moved up).
        case answer
    }

    /// Connections with an answer to a request that waited, in the order they got it.
    private var answers: [Connection] = []
    /// The other connections with output or a pending close, in the order they got it.
    private var others: [Connection] = []

    var isEmpty: Bool { answers.isEmpty && others.isEmpty }

    /// Queues `connection` once per batch; one already queued moves up if it now holds an answer.
    mutating func add(_ connection: Connection, answer: Bool) {
        switch connection.flushRank {
        case .none:
            connection.flushRank = answer ? .answer : .other
            if answer { answers.append(connection) } else { others.append(connection) }
        case .other:
            guard answer else { return }
            connection.flushRank = .answer
            answers.append(connection)
        case .answer:
            return
        }
    }

    /// Moves every queued connection into `batch` (empty), the last to write first (the caller pops
    /// from the end), and leaves the queue empty. Their ranks stay until the caller pops them. Moved
    /// by swapping or popping: an array's bulk removal destroys its references through the runtime's
    /// generic witnesses (callgrind: ~400 instructions a turn).
    mutating func take(into batch: inout [Connection]) {
        precondition(batch.isEmpty, "the previous batch was not written")
        guard !answers.isEmpty else {
            // Most turns: no answer to a wait, so no connection moved up either.
            swap(&others, &batch)
            batch.reverse()
            return
        }
        while let connection = others.popLast() {
            if connection.flushRank == .other { batch.append(connection) }  // else moved up: in `answers`
        }
        while let connection = answers.popLast() { batch.append(connection) }
    }
}
