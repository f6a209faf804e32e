import BatonNamespace
import BatonProtocol
import CZooKeeper
#if canImport(Glibc)
import Glibc
#endif

/// The C memory of one `zoo_amulti`: the operations, their results, the C strings they point to, the
/// buffers a create writes its path into and the stats a set writes into. It lives from the call until
/// the completion has been read (the C client writes the results then).
final class MultiBatch {
    let count: Int
    let operations: UnsafeMutablePointer<zoo_op_t>
    let results: UnsafeMutablePointer<zoo_op_result_t>
    private var strings: [UnsafeMutablePointer<CChar>] = []
    private var pathBuffers: [Int: (UnsafeMutablePointer<CChar>, Int)] = [:]
    private var stats: [Int: UnsafeMutablePointer<CZooKeeper.Stat>] = [:]
    private let requested: [MultiOperation]
    private var deallocated = false

    /// Room for the sequence suffix ZooKeeper appends (10 digits) and the terminating NUL.
    static let sequenceRoom = 16

    init(_ requested: [MultiOperation], client: ZooKeeperClient) {
        self.requested = requested
        count = requested.count
        operations = .allocate(capacity: count)
        results = .allocate(capacity: count)
        results.initialize(repeating: zoo_op_result_t(), count: count)
        operations.initialize(repeating: zoo_op_t(), count: count)
        for (index, operation) in requested.enumerated() {
            let op = operations + index
            switch operation {
            case .create(let path, let data, let mode):
                let full = client.fullPath(path)
                let capacity = full.utf8.count + MultiBatch.sequenceRoom
                let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
                buffer.initialize(repeating: 0, count: capacity)
                pathBuffers[index] = (buffer, capacity)
                let value = bytes(data)
                zoo_create_op_init(op, string(full), value, data.isEmpty ? -1 : Int32(data.count), client.acl,
                                   ZooKeeperClient.flags(mode), buffer, Int32(capacity))
            case .delete(let path, let version):
                zoo_delete_op_init(op, string(client.fullPath(path)), version)
            case .set(let path, let data, let version):
                let stat = UnsafeMutablePointer<CZooKeeper.Stat>.allocate(capacity: 1)
                stat.initialize(to: CZooKeeper.Stat())
                stats[index] = stat
                zoo_set_op_init(op, string(client.fullPath(path)), bytes(data), data.isEmpty ? -1 : Int32(data.count), version, stat)
            case .check(let path, let version):
                zoo_check_op_init(op, string(client.fullPath(path)), version)
            }
        }
    }

    private func string(_ text: String) -> UnsafeMutablePointer<CChar> {
        let copy = strdup(text)!
        strings.append(copy)
        return copy
    }

    private func bytes(_ data: [UInt8]) -> UnsafeMutablePointer<CChar>? {
        guard !data.isEmpty else { return nil }
        let copy = UnsafeMutablePointer<CChar>.allocate(capacity: data.count)
        for (index, byte) in data.enumerated() { copy[index] = CChar(bitPattern: byte) }
        strings.append(copy)
        return copy
    }

    /// The results, or the first operation that failed (ZooKeeper marks the others "rolled back").
    func outcome(_ code: Int32, client: ZooKeeperClient?) -> Result<[MultiResult], MultiFailure> {
        guard code == ZOK.rawValue else {
            for index in 0..<count {
                let error = results[index].err
                if error != ZOK.rawValue && error != ZRUNTIMEINCONSISTENCY.rawValue {
                    let path = requested[index].path
                    return .failure(MultiFailure(index: index, error: ZooKeeperError.replyError(error, path)))
                }
            }
            return .failure(MultiFailure(index: nil, error: ZooKeeperError.replyError(code)))
        }
        return .success(requested.indices.map { index in
            switch requested[index] {
            case .create:
                let created = String(cString: pathBuffers[index]!.0)
                return .created(path: client?.relativePath(created) ?? created, stat: Stat())
            case .delete: return .deleted
            case .set: return .set(Stat(zooKeeper: stats[index]!.pointee))
            case .check: return .checked
            }
        })
    }

    func deallocate() {
        guard !deallocated else { return }
        deallocated = true
        strings.forEach { free($0) }
        for (buffer, _) in pathBuffers.values { buffer.deallocate() }
        for stat in stats.values { stat.deallocate() }
        operations.deallocate()
        results.deallocate()
    }
}

extension MultiOperation {
    var path: String {
        switch self {
        case .create(let path, _, _), .delete(let path, _), .set(let path, _, _), .check(let path, _): path
        }
    }
}
