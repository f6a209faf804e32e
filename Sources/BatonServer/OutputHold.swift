/// Output that waits for the log (docs/STORAGE.md, "Group commit"): nobody sees what could be lost.
/// Every byte produced after a record was appended (a reply, an event, a grant to another session, a
/// read of the changed node) is written only once that record is as durable as the policy promises.
///
/// The loop tags a connection's new bytes, when it flushes them, with the last LSN appended then:
/// at or above the one appended when they were produced, so never early. The bytes go out only up
/// to the last tag at or below the log's committed LSN, in order. One per connection; pure (no
/// libuv, no clock), so the rule is tested on its own.
struct OutputHold: Equatable {
    /// The end of a run of output (an offset in the connection's unwritten bytes) and the LSN it
    /// waits for. Both ascend along `marks`.
    struct Mark: Equatable {
        var end: Int
        var lsn: UInt64
    }

    private(set) var marks: [Mark] = []

    /// Nothing held: everything in the output may go once the log is committed.
    var isEmpty: Bool { marks.isEmpty }

    /// The connection's unwritten output is `outputBytes` long; the bytes beyond the last mark were
    /// produced while `lastLSN` was the last record appended. Returns how many bytes from the front
    /// may be written now that the log is committed up to `committedLSN`; the caller writes exactly
    /// those, and the marks move down by as much.
    mutating func releasable(outputBytes: Int, lastLSN: UInt64, committedLSN: UInt64) -> Int {
        let marked = marks.last?.end ?? 0
        precondition(outputBytes >= marked, "held output only grows at its end")
        if outputBytes > marked {
            if marks.isEmpty && lastLSN <= committedLSN { return outputBytes }  // the usual case: nothing waits
            precondition(lastLSN >= marks.last?.lsn ?? 0, "LSNs only grow")
            if marks.last?.lsn == lastLSN {
                marks[marks.count - 1].end = outputBytes
            } else {
                marks.append(Mark(end: outputBytes, lsn: lastLSN))
            }
        }
        var released = 0
        var count = 0
        for mark in marks {
            guard mark.lsn <= committedLSN else { break }
            released = mark.end
            count += 1
        }
        guard count > 0 else { return 0 }
        marks.removeFirst(count)
        for index in marks.indices { marks[index].end -= released }
        return released
    }
}
