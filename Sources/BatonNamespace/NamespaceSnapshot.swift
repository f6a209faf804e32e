import BatonProtocol
import Collections

/// The persistent state at one moment: a value (structure shared with the live tree) that may
/// cross threads. `serialize()` leaves out ephemeral nodes, which do not survive a restart.
/// Layout in docs/RECORDS.md.
public struct NamespaceSnapshot: Sendable {
    let nodes: NodeTree
    public let transactionCurrent: UInt64
    public let transactionReserved: UInt64
    /// The largest `sequenceReserved` of any node, when read from bytes (recovery's sequence
    /// high-water mark without another pass over a million nodes); 0 otherwise.
    var sequenceReservedMax: UInt64 = 0

    public static let formatVersion: UInt8 = 1

    /// The persistent nodes, with ephemeral children left out of their parents' counts.
    public func persistentNodes() -> [String: Node] {
        var result: [String: Node] = [:]
        nodes.walk { path, node in
            guard node.kind != .ephemeral else { return false }
            var copy = node
            copy.childrenCount = 0
            nodes.forEachChild(of: path) { _, child in if child.kind != .ephemeral { copy.childrenCount += 1 } }
            result[path] = copy
            return true
        }
        return result
    }

    /// The size of the pieces `serialize(pieceBytes:into:)` hands out by default: what a snapshot
    /// writer holds at a time instead of the whole payload.
    public static let pieceBytes = 1 << 20

    /// The bytes in one array (tests, small namespaces); `serialize(pieceBytes:into:)` streams them.
    public func serialize() -> [UInt8] {
        var bytes: [UInt8] = []
        serialize { bytes += $0 }
        return bytes
    }

    /// Parents before children, children in name order, so equal states give equal bytes. Hands
    /// them to `emit` in pieces of at least `pieceBytes` (the last may be shorter; a piece passes
    /// `pieceBytes` by at most one node), reusing one buffer: `emit` must not keep the array.
    public func serialize<Failure: Error>(pieceBytes: Int = Self.pieceBytes,
                                          into emit: ([UInt8]) throws(Failure) -> Void) throws(Failure) {
        precondition(pieceBytes > 0, "pieces must hold something")
        // The node count comes first in the layout, before the nodes streamed after it: counted
        // here without building a path (ephemeral nodes have no children, so every persistent
        // node is reached by the walk below).
        let count = nodes.countNodes { $0.kind != .ephemeral }
        var writer = WireWriter(capacity: min(pieceBytes, 64 + nodes.count * 96) + 4_096)
        writer.u8(Self.formatVersion)
        writer.u64(transactionCurrent)
        writer.u64(transactionReserved)
        writer.u64(UInt64(count))
        var written = 0
        var failure: Failure?
        nodes.walk { path, node in
            guard failure == nil, node.kind != .ephemeral else { return false }
            written += 1
            writer.string(path)
            writer.u8(node.kind.rawValue)
            writer.u64(node.stat.createdTransaction)
            writer.u64(node.stat.modifiedTransaction)
            writer.u64(node.stat.childrenTransaction)
            writer.u64(node.stat.createdMilliseconds)
            writer.u64(node.stat.modifiedMilliseconds)
            writer.i32(node.stat.version)
            writer.i32(node.stat.childrenVersion)
            writer.u64(node.sequenceNext)
            writer.u64(node.sequenceReserved)
            writer.blob(node.data)
            if writer.bytes.count >= pieceBytes {
                do throws(Failure) { try emit(writer.bytes) } catch { failure = error; return false }
                writer.removeAll(keepingCapacity: true)
            }
            return true
        }
        if let failure { throw failure }
        precondition(written == count, "the snapshot's node count changed while it was written")
        if !writer.bytes.isEmpty { try emit(writer.bytes) }
    }

    static func deserialize(_ bytes: [UInt8]) throws(RecoveryError) -> NamespaceSnapshot {
        var reader = WireReader(bytes)
        do {
            let version = try reader.u8("format version")
            guard version == formatVersion else { throw RecoveryError("unknown snapshot format version \(version)") }
            let transactionCurrent = try reader.u64("transaction"), transactionReserved = try reader.u64("reserved")
            let count = try reader.u64("node count")
            guard count >= 1 && count <= UInt64(reader.remaining) else { throw RecoveryError("bad node count \(count)") }
            // The snapshot is written depth first (parents before children, children in name
            // order), so a stack of the open ancestors builds the tree in one pass: a node's
            // children become its directory's sorted chunks when its subtree is complete, and only
            // parents are hashed (`NodeTree`).
            var nodes = NodeTree(root: Node(data: [], stat: Stat()))  // the root is set when read
            var open: [OpenNode] = []
            var sequenceReservedMax: UInt64 = 0
            func close(_ entry: consuming OpenNode) throws(RecoveryError) {
                // Written by this code they are in order; sort any others (duplicates were refused).
                if !entry.sorted {
                    entry.children.sort { NameOrder.precedes($0.name, $1.name) }
                    for index in entry.children.indices.dropFirst()
                    where NameOrder.order(entry.children[index - 1].name, entry.children[index].name) == 0 {
                        throw RecoveryError("duplicate node \(NamespacePath.child(entry.children[index].name, of: entry.path))")
                    }
                }
                entry.node.childrenCount = UInt32(entry.children.count)
                nodes.adopt(entry.path, sortedChildren: entry.children)
                guard !open.isEmpty else { return nodes.setRoot(entry.node) }
                if let previous = open[open.count - 1].children.last {
                    let order = NameOrder.order(previous.name, entry.name)
                    if order == 0 { throw RecoveryError("duplicate node \(NamespacePath.child(entry.name, of: open[open.count - 1].path))") }
                    if order > 0 { open[open.count - 1].sorted = false }
                }
                open[open.count - 1].children.append(NodeTree.Entry(name: entry.name, node: entry.node))
            }
            for index in 0..<count {
                var path = try reader.string("path")
                let kindByte = try reader.u8("kind")
                guard let kind = NodeKind(rawValue: kindByte), kind != .ephemeral else {
                    throw RecoveryError("bad node kind \(kindByte)")
                }
                var stat = Stat()
                stat.kind = kind
                stat.createdTransaction = try reader.u64("czxid")
                stat.modifiedTransaction = try reader.u64("mzxid")
                stat.childrenTransaction = try reader.u64("pzxid")
                stat.createdMilliseconds = try reader.u64("ctime")
                stat.modifiedMilliseconds = try reader.u64("mtime")
                stat.version = try reader.i32("version")
                stat.childrenVersion = try reader.i32("cversion")
                let sequenceNext = try reader.u64("sequence"), sequenceReserved = try reader.u64("sequence reserved")
                sequenceReservedMax = max(sequenceReservedMax, sequenceReserved)
                let data = try reader.blob("data")
                stat.dataLength = UInt32(data.count)
                let node = Node(data: data, stat: stat, sequenceNext: sequenceNext, sequenceReserved: sequenceReserved)
                if index == 0 {
                    guard path == NamespacePath.root else { throw RecoveryError("snapshot does not start at the root") }
                    open.append(OpenNode(path: path, name: "", node: node))
                    continue
                }
                // The parent is the path up to its last "/": compared as bytes with the open
                // ancestors' paths and the name cut out once, without building the parent's path
                // (a million strings fewer; the writer built the path from its parent's bytes).
                guard let (slash, name) = Self.lastSegment(&path) else { throw RecoveryError("bad path \(path)") }
                while !open.isEmpty, !Self.isParent(&open[open.count - 1].path, slash: slash, of: &path) {
                    try close(open.removeLast())
                }
                guard !open.isEmpty else { throw RecoveryError("\(path) comes before its parent") }
                open.append(OpenNode(path: path, name: name, node: node))
            }
            while let last = open.popLast() { try close(last) }
            guard reader.isAtEnd else { throw RecoveryError("trailing bytes after snapshot") }
            return NamespaceSnapshot(nodes: nodes, transactionCurrent: transactionCurrent,
                                     transactionReserved: transactionReserved, sequenceReservedMax: sequenceReservedMax)
        } catch let error as RecoveryError {
            throw error
        } catch {
            throw RecoveryError("malformed snapshot: \(error)")
        }
    }

    /// A node read whose subtree is still being read (recovery's stack of open ancestors).
    private struct OpenNode {
        var path: String
        var name: String
        var node: Node
        var children: [NodeTree.Entry] = []
        var sorted = true
    }

    /// The offset of the last "/" of a path other than the root, and the name after it; nil if
    /// the path does not start with "/", ends with one, or is the root.
    private static func lastSegment(_ path: inout String) -> (slash: Int, name: String)? {
        path.withUTF8 { bytes in
            guard bytes.count >= 2, bytes[0] == UInt8(ascii: "/"), bytes[bytes.count - 1] != UInt8(ascii: "/") else { return nil }
            var slash = bytes.count - 2
            while bytes[slash] != UInt8(ascii: "/") { slash -= 1 }
            return (slash, String(decoding: UnsafeBufferPointer(rebasing: bytes[(slash + 1)...]), as: UTF8.self))
        }
    }

    /// Whether `parent` is the path before `path`'s last "/" at `slash` (the root for 0).
    private static func isParent(_ parent: inout String, slash: Int, of path: inout String) -> Bool {
        parent.withUTF8 { parentBytes in
            if slash == 0 { return parentBytes.count == 1 && parentBytes[0] == UInt8(ascii: "/") }
            guard parentBytes.count == slash else { return false }
            return path.withUTF8 { bytes in
                for index in 0..<slash where bytes[index] != parentBytes[index] { return false }
                return true
            }
        }
    }
}
