/// High-water marks that a damaged log cannot take away (docs/STORAGE.md, "Marks").
///
/// The namespace's counters (the transaction id behind fencing tokens, and the per-parent sequence
/// counters) restart at marks logged ahead of use. A cut log can lose such a mark; these copies,
/// outside the log, make recovery restart above every value ever handed out whatever is cut.
/// The store keeps them opaque numbers: the server raises them before a reply can carry a value
/// beyond them.
public struct CounterMarks: Sendable, Equatable {
    /// Every transaction id below this may have been handed out.
    public var transactions: UInt64
    /// Every sequence number below this may have been handed out, under any parent.
    public var sequences: UInt64

    public init(transactions: UInt64 = 0, sequences: UInt64 = 0) {
        self.transactions = transactions
        self.sequences = sequences
    }

    /// True if `other` has a mark above this one's.
    public func isBelow(_ other: CounterMarks) -> Bool {
        other.transactions > transactions || other.sequences > sequences
    }

    /// The larger of each mark.
    public func merged(with other: CounterMarks) -> CounterMarks {
        CounterMarks(transactions: max(transactions, other.transactions), sequences: max(sequences, other.sequences))
    }
}

/// The contents of a `MARKS-a` / `MARKS-b` file: the counter marks plus what recovery needs to
/// notice a lost log end (the last segment, and where a clean close left the log).
struct MarksFile: Equatable {
    /// Each write increases it; of two valid copies the higher one is the newer.
    var generation: UInt64
    var counters: CounterMarks
    /// The first LSN of the segment appends went to when this was written: it must exist.
    var lastSegmentFirstLSN: LogSequenceNumber
    /// Set by a clean `close()`: the log ended exactly at this LSN. nil while a store has it open.
    var cleanEndLSN: LogSequenceNumber?
}

extension StoreFormat {
    static let marksFileNames = ["MARKS-a", "MARKS-b"]
    static let marksMagic: [UInt8] = Array("BATONMRK".utf8)
    /// magic(8) version(1) flags(1) reserved(2) generation(8) transactions(8) sequences(8)
    /// lastSegmentFirstLSN(8) cleanEndLSN(8) crc32(4)
    static let marksFileBytes = 56
    /// The first format with MARKS files; older directories are upgraded on open.
    static let firstVersionWithMarks: UInt8 = 2

    static func encodeMarks(_ marks: MarksFile) -> [UInt8] {
        var bytes = marksMagic
        bytes.append(version)
        bytes.append(marks.cleanEndLSN == nil ? 0 : 1)
        bytes.append(contentsOf: [0, 0])
        appendUInt64(marks.generation, to: &bytes)
        appendUInt64(marks.counters.transactions, to: &bytes)
        appendUInt64(marks.counters.sequences, to: &bytes)
        appendUInt64(marks.lastSegmentFirstLSN, to: &bytes)
        appendUInt64(marks.cleanEndLSN ?? 0, to: &bytes)
        appendUInt32(checksum(bytes[8...]), to: &bytes)
        precondition(bytes.count == marksFileBytes)
        return bytes
    }

    /// The marks, or why the bytes are not a valid MARKS file.
    static func decodeMarks(_ bytes: [UInt8]) -> Result<MarksFile, MarksDamage> {
        guard bytes.count == marksFileBytes else { return .failure(MarksDamage("\(bytes.count) bytes, expected \(marksFileBytes)")) }
        guard Array(bytes[0..<8]) == marksMagic else { return .failure(MarksDamage("bad magic")) }
        guard readUInt32(bytes, at: 52) == checksum(bytes[8..<52]) else { return .failure(MarksDamage("checksum mismatch")) }
        let clean = bytes[9] & 1 == 1
        return .success(MarksFile(
            generation: readUInt64(bytes, at: 12),
            counters: CounterMarks(transactions: readUInt64(bytes, at: 20), sequences: readUInt64(bytes, at: 28)),
            lastSegmentFirstLSN: readUInt64(bytes, at: 36),
            cleanEndLSN: clean ? readUInt64(bytes, at: 44) : nil))
    }
}

struct MarksDamage: Error, Equatable {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}
