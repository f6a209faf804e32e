import BatonProtocol

/// A write-ahead log record: one change to persistent state. Layout in docs/RECORDS.md:
/// a format version byte, then a type byte, then big-endian fields (strings u16-length UTF-8,
/// byte blobs u32-length), as in the wire protocol.
public enum NamespaceRecord: Sendable, Equatable {
    case create(transaction: UInt64, wallMilliseconds: UInt64, path: String, data: [UInt8], kind: NodeKind,
                parentChildrenVersion: Int32)
    case delete(transaction: UInt64, path: String, parentChildrenVersion: Int32)
    case set(transaction: UInt64, wallMilliseconds: UInt64, path: String, data: [UInt8], version: Int32)
    /// An empty container removed by the sweep (not by a client).
    case sweepContainer(transaction: UInt64, path: String, parentChildrenVersion: Int32)
    /// Transaction ids below `upTo` may be in use: recovery restarts the counter at `upTo`.
    case reserveTransactions(upTo: UInt64)
    /// Sequence numbers of `parent` below `upTo` may be in use.
    case reserveSequence(parent: String, upTo: UInt64)
    /// A multi's records: applied all or none.
    case multi([NamespaceRecord])

    public static let formatVersion: UInt8 = 1

    enum RecordType: UInt8 {
        case create = 1
        case delete = 2
        case set = 3
        case sweepContainer = 4
        case reserveTransactions = 5
        case reserveSequence = 6
        case multi = 7
    }

    public func encode() -> [UInt8] {
        var writer = WireWriter(capacity: 64)
        writer.u8(Self.formatVersion)
        encodeBody(into: &writer)
        return writer.bytes
    }

    private func encodeBody(into writer: inout WireWriter) {
        switch self {
        case .create(let transaction, let wallMilliseconds, let path, let data, let kind, let parentChildrenVersion):
            writer.u8(RecordType.create.rawValue)
            writer.u64(transaction)
            writer.u64(wallMilliseconds)
            writer.u8(kind.rawValue)
            writer.i32(parentChildrenVersion)
            writer.string(path)
            writer.blob(data)
        case .delete(let transaction, let path, let parentChildrenVersion):
            writer.u8(RecordType.delete.rawValue)
            writer.u64(transaction)
            writer.i32(parentChildrenVersion)
            writer.string(path)
        case .set(let transaction, let wallMilliseconds, let path, let data, let version):
            writer.u8(RecordType.set.rawValue)
            writer.u64(transaction)
            writer.u64(wallMilliseconds)
            writer.i32(version)
            writer.string(path)
            writer.blob(data)
        case .sweepContainer(let transaction, let path, let parentChildrenVersion):
            writer.u8(RecordType.sweepContainer.rawValue)
            writer.u64(transaction)
            writer.i32(parentChildrenVersion)
            writer.string(path)
        case .reserveTransactions(let upTo):
            writer.u8(RecordType.reserveTransactions.rawValue)
            writer.u64(upTo)
        case .reserveSequence(let parent, let upTo):
            writer.u8(RecordType.reserveSequence.rawValue)
            writer.u64(upTo)
            writer.string(parent)
        case .multi(let records):
            writer.u8(RecordType.multi.rawValue)
            writer.u32(UInt32(records.count))
            for record in records { record.encodeBody(into: &writer) }
        }
    }

    public static func decode(_ bytes: [UInt8]) throws(RecoveryError) -> NamespaceRecord {
        var reader = WireReader(bytes)
        do {
            let version = try reader.u8("format version")
            guard version == formatVersion else { throw RecoveryError("unknown record format version \(version)") }
            let record = try decodeBody(&reader, depth: 0)
            guard reader.isAtEnd else { throw RecoveryError("trailing bytes after record") }
            return record
        } catch let error as RecoveryError {
            throw error
        } catch {
            throw RecoveryError("malformed record: \(error)")
        }
    }

    private static func decodeBody(_ reader: inout WireReader, depth: Int) throws -> NamespaceRecord {
        let typeByte = try reader.u8("record type")
        guard let type = RecordType(rawValue: typeByte) else { throw RecoveryError("unknown record type \(typeByte)") }
        switch type {
        case .create:
            let transaction = try reader.u64("transaction"), wall = try reader.u64("wall time")
            let kindByte = try reader.u8("kind")
            guard let kind = NodeKind(rawValue: kindByte) else { throw RecoveryError("unknown node kind \(kindByte)") }
            let parentChildrenVersion = try reader.i32("parent children version")
            let path = try reader.string("path")
            return .create(transaction: transaction, wallMilliseconds: wall, path: path, data: try reader.blob("data"),
                           kind: kind, parentChildrenVersion: parentChildrenVersion)
        case .delete:
            let transaction = try reader.u64("transaction"), parentChildrenVersion = try reader.i32("parent children version")
            return .delete(transaction: transaction, path: try reader.string("path"), parentChildrenVersion: parentChildrenVersion)
        case .set:
            let transaction = try reader.u64("transaction"), wall = try reader.u64("wall time")
            let version = try reader.i32("version"), path = try reader.string("path")
            return .set(transaction: transaction, wallMilliseconds: wall, path: path, data: try reader.blob("data"), version: version)
        case .sweepContainer:
            let transaction = try reader.u64("transaction"), parentChildrenVersion = try reader.i32("parent children version")
            return .sweepContainer(transaction: transaction, path: try reader.string("path"),
                                   parentChildrenVersion: parentChildrenVersion)
        case .reserveTransactions:
            return .reserveTransactions(upTo: try reader.u64("reserved transaction"))
        case .reserveSequence:
            let upTo = try reader.u64("reserved sequence")
            return .reserveSequence(parent: try reader.string("parent"), upTo: upTo)
        case .multi:
            guard depth == 0 else { throw RecoveryError("nested multi record") }
            let count = Int(try reader.u32("record count"))
            // Each nested record takes at least 9 bytes: refuse counts the bytes cannot hold.
            guard count <= reader.remaining else { throw RecoveryError("multi record count exceeds its bytes") }
            var records: [NamespaceRecord] = []
            records.reserveCapacity(count)
            for _ in 0..<count { records.append(try decodeBody(&reader, depth: depth + 1)) }
            return .multi(records)
        }
    }
}
