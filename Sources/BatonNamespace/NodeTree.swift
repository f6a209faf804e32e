import Collections

/// The tree's nodes, keyed by parent path and name rather than by full path. Each parent with
/// children has a `Directory` (one that had children may keep it empty: `withDirectory`): its children as (name, node) entries in the order of the names'
/// UTF-8 bytes (the listing order, PROTOCOL.md §5.2), in chunks of at most `chunkMax`. A lookup
/// hashes the parent's path and binary-searches the name. So a node costs its entry (its name,
/// usually a small inline string, and the node) instead of a heap string for its full path plus a
/// hash-trie entry, and a recovery builds sorted arrays instead of hashing a million paths. The
/// directory is also the parent's list of children (`childNames`): a name is kept once, and a
/// create or delete changes one sorted array, not two.
///
/// A value whose copies share every chunk: a snapshot (written on another thread, PROTOCOL.md
/// §10's state at one moment) and a multi's rollback point cost O(directories' trie) to take, and
/// a write after such a copy copies the touched parent's chunk list and one chunk.
struct NodeTree: Sendable {
    /// Bounds what a write after a copy (snapshot, rollback point) copies: one chunk of entries.
    static let chunkMax = 128

    struct Entry: Sendable {
        var name: String
        /// Never nil while stored: optional so that `subscript` can hand it out in place.
        var node: Node?
    }

    struct Directory: Sendable {
        var chunks: [[Entry]] = []
        /// The storage of the only chunk, emptied by a removal, for the next insert (a lock's directory
        /// empties and fills once per pair: two arrays made and freed each time, ~1.5 % of a pair).
        /// Only a small one is kept (`spareCapacityMax`); empty, it holds no storage.
        var spare: [Entry] = []
    }

    private var root: Node?
    private var directories: TreeDictionary<String, Directory> = [:]
    /// Nodes, the root included.
    private(set) var count = 1

    init(root: Node) { self.root = root }

    /// Whether `path` is the root's: its one byte (`== NamespacePath.root` went through the string
    /// comparison, ~70 instructions, several times per change).
    @inline(__always) static func isRoot(_ path: String) -> Bool {
        path.utf8.count == 1 && path.utf8.first == UInt8(ascii: "/")
    }

    /// The node at `path`; setting nil removes it. A node's parent need not be in the tree here:
    /// the namespace keeps parents and their `childrenCount` in step.
    subscript(path: String) -> Node? {
        // Read in place (`tree[path]?.stat` copies no node).
        _read {
            if Self.isRoot(path) {
                yield root
            } else {
                let (directory, location) = lookup(path)
                if let directory, location.found {
                    yield directory.chunks[location.chunk][location.position].node
                } else {
                    yield nil
                }
            }
        }
        set {
            if Self.isRoot(path) {
                precondition(newValue.isSome, "the root cannot be removed")
                root = newValue
                return
            }
            let (inserted, removed) = withDirectory(of: path) { directory, name -> (Bool, Node?) in
                let location = directory.locate(name)
                if location.found {
                    guard let newValue else { return (false, directory.removeNode(at: location)) }
                    directory[nodeAt: location] = newValue
                    return (false, nil)
                }
                guard let newValue else { return (false, nil) }
                Self.insert(newValue, named: name, into: &directory, at: location)
                return (true, nil)
            }
            if inserted { count += 1 }
            if let childrenVersion = removed?.childrenVersion {
                count -= 1
                didRemove(childrenVersion: childrenVersion, at: path)
            }
        }
        // Changes in place (`tree[path]!.field = …`: a lookup and then an access to the directory;
        // hot paths use `update`, one access); removing is `removeValue` or setting nil.
        _modify {
            if Self.isRoot(path) {
                yield &root
                precondition(root.isSome, "the root cannot be removed")
                return
            }
            let (parent, location) = locate(path)
            if let location, location.found {
                // In place: the node's own arrays (data, sequence counters) stay uniquely referenced.
                yield &directories[parent]![nodeAt: location]
            } else {
                var value: Node? = nil
                yield &value
                guard let value else { return }
                precondition(insertIfAbsent(path) { value }, "inserted twice")
            }
        }
    }

    /// `body` with the node at `path` (nil: none), read where it lies: `self[path]` yields a copy (an
    /// `Array` element's `get` copies the whole entry, its name and the node's arrays retained and
    /// released; ~0.5 % of a contended grant in a create's read of its parent, ~2.5 % of a pget).
    /// `parent`: the path's parent if the caller has it already (not made again from the path).
    /// `mutating` though it changes nothing: a non-mutating call on the namespace's stored tree
    /// copies the whole tree value first (its root node and trie retained and released).
    mutating func withNode<Result>(at path: String, parent: String? = nil, _ body: (Node?) -> Result) -> Result {
        if Self.isRoot(path) { return body(root) }
        let (directory, location) = lookup(path, parent: parent)
        guard let directory, location.found else { return body(nil) }
        return directory.chunks[location.chunk].withUnsafeBufferPointer { body($0[location.position].node) }
    }

    /// Inserts the node `make` returns at a non-root `path` unless a node is there (then false,
    /// nothing changed, `make` not called): one search and one access to the parent's directory
    /// instead of `contains` and then a set. The node is made where it is inserted (one handed in
    /// was copied into an optional and the original released: ~0.2 % of a contended grant).
    /// `parent`: the path's parent if the caller has it already (not made again from the path).
    mutating func insertIfAbsent(_ path: String, parent: String? = nil, _ make: () -> Node) -> Bool {
        precondition(!Self.isRoot(path), "the root always exists")
        let inserted = withDirectory(of: path, parent: parent) { directory, name in
            let location = directory.locate(name)
            if location.found { return false }
            Self.insert(make(), named: name, into: &directory, at: location)
            return true
        }
        if inserted { count += 1 }
        return inserted
    }

    /// Changes the node at `path` in place (nil: none; a node left there by `body` is inserted) with
    /// one access to its parent's directory: `tree[path]!.field = …` costs a lookup and then the
    /// access. `body` does not remove the node (that is `removeValue`).
    /// `parent`: the path's parent if the caller has it already (not made again from the path).
    mutating func update<Result, Failure: Error>(_ path: String, parent: String? = nil,
                                                 _ body: (inout Node?) throws(Failure) -> Result) throws(Failure) -> Result {
        if Self.isRoot(path) {
            defer { precondition(root.isSome, "the root cannot be removed") }
            return try body(&root)
        }
        // Two optionals, not a `Swift.Result`: that one was destroyed through its value witnesses
        // (~0.3 % of a lock pair, in a create's access to its parent).
        var outcome: Result?
        var failure: Failure?
        let inserted = withDirectory(of: path, parent: parent) { directory, name in
            let location = directory.locate(name)
            if location.found {
                do throws(Failure) { outcome = try body(&directory[nodeAt: location]) } catch { failure = error }
                return false
            }
            var value: Node? = nil
            do throws(Failure) { outcome = try body(&value) } catch { failure = error }
            guard let value else { return false }
            Self.insert(value, named: name, into: &directory, at: location)
            return true
        }
        if inserted { count += 1 }
        if let failure { throw failure }
        return outcome.unsafelyUnwrapped
    }

    /// A new entry where `locate` found its place.
    private static func insert(_ node: consuming Node, named name: UnsafeBufferPointer<UInt8>, into directory: inout Directory,
                               at location: Directory.Location) {
        directory.insert(Entry(name: String(decoding: name, as: UTF8.self), node: node), at: location)
    }

    /// One access to the directory of a non-root `path`'s parent (each costs a hash of the parent's
    /// path and a trie walk): `body` gets it in place (empty: no children) and the name's bytes (no
    /// string is made for it). `parent`: the path's parent, if the caller has it (a string made once
    /// per create or delete rather than once per access).
    ///
    /// In place in the trie's leaf (`updateValue(forKey:default:with:)`): its `subscript` `_modify`
    /// moves the key and the directory out into a state that it copies and moves back (a profile's
    /// `_HashNode.ValueUpdateState` items, ~3 % of a lock pair). A directory emptied by a removal
    /// stays while its node exists (a lock's directory empties and fills once per pair: no trie
    /// insert and removal each time; `didRemove` drops it with its node); one made here and left
    /// empty is dropped at once (a path under a missing node leaves nothing behind).
    private mutating func withDirectory<Result>(of path: String, parent: String? = nil,
                                                _ body: (inout Directory, UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        var path = path
        return path.withUTF8 { bytes in
            let (slash, key) = Self.split(bytes, parent: parent)
            let name = UnsafeBufferPointer(rebasing: bytes[(slash + 1)...])
            var leftEmpty = false
            let result = directories.updateValue(forKey: key, default: Directory()) { directory in
                let wasEmpty = directory.chunks.isEmpty
                defer { leftEmpty = wasEmpty && directory.chunks.isEmpty }
                return body(&directory, name)
            }
            if leftEmpty { directories.removeValue(forKey: key) }
            return result
        }
    }

    /// After a node's removal: its directory, if it kept an empty one (see `withDirectory`). Only a
    /// node that ever had a child (its children version moved) can have one: a lock's waiter node
    /// costs no lookup here.
    private mutating func didRemove(childrenVersion: Int32, at path: String) {
        guard childrenVersion != 0, directories[path]?.chunks.isEmpty == true else { return }
        directories.removeValue(forKey: path)
    }

    /// Directories in the table, empty ones kept included (for tests: none may outlive its node).
    var directoryCount: Int { directories.count }

    /// The capacity an emptied directory keeps for its next child (for tests; 0 without a directory).
    func directorySpareCapacity(of parent: String) -> Int { directories[parent]?.spare.capacity ?? 0 }

    /// Whether a node is at `path` (no copy of it).
    func contains(_ path: String) -> Bool {
        Self.isRoot(path) || lookup(path).location.found
    }

    /// The directory of a non-root `path`'s parent (nil if the parent has no children) and where the
    /// name is in it or would go. One scan of the path; the name is compared as the path's own bytes
    /// (no string is made for it: several lookups per request).
    /// `parent`: the path's parent, if the caller has it.
    private func lookup(_ path: String, parent: String? = nil) -> (directory: Directory?, location: Directory.Location) {
        var path = path
        return path.withUTF8 { bytes in
            let (slash, key) = Self.split(bytes, parent: parent)
            guard let directory = directories[key] else { return (nil, (0, 0, false)) }
            return (directory, directory.locate(UnsafeBufferPointer(rebasing: bytes[(slash + 1)...])))
        }
    }

    /// `lookup` for a change: the parent (the directories' key) and the location, nil without a
    /// directory. Holds no copy of the directory (a change to it would then copy its chunk list).
    private func locate(_ path: String) -> (parent: String, location: Directory.Location?) {
        var path = path
        return path.withUTF8 { bytes in
            let slash = Self.lastSlash(bytes)
            let parent = Self.parent(bytes, slash)
            return (parent, directories[parent]?.locate(UnsafeBufferPointer(rebasing: bytes[(slash + 1)...])))
        }
    }

    /// A non-root path's last slash and its parent (the directories' key): `parent` if the caller
    /// has it, else made from the bytes.
    private static func split(_ bytes: UnsafeBufferPointer<UInt8>, parent: String?) -> (slash: Int, parent: String) {
        guard let parent else {
            let slash = lastSlash(bytes)
            return (slash, Self.parent(bytes, slash))
        }
        let slash = Self.isRoot(parent) ? 0 : parent.utf8.count
        assert(bytes[slash] == UInt8(ascii: "/") && lastSlash(bytes) == slash, "\(parent) is not the parent")
        return (slash, parent)
    }

    private static func lastSlash(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var index = bytes.count - 1
        while index > 0 && bytes[index] != UInt8(ascii: "/") { index -= 1 }
        return index
    }

    private static func parent(_ bytes: UnsafeBufferPointer<UInt8>, _ slash: Int) -> String {
        slash == 0 ? NamespacePath.root : String(decoding: UnsafeBufferPointer(rebasing: bytes[..<slash]), as: UTF8.self)
    }

    @discardableResult
    mutating func removeValue(forKey path: String, parent: String? = nil) -> Node? {
        removeValue(forKey: path, parent: parent) { (_, _) throws(Never) in }
    }

    /// Removes the node at a non-root `path` (nil: none) unless `check` throws (then nothing
    /// changed): one access to the parent's directory where a read and then a removal take two.
    /// `check` gets the node's version and children count, read where it lies (handing it the node,
    /// even borrowed, copied it: its arrays retained and released, ~0.4 % of a lock pair).
    mutating func removeValue<Failure: Error>(forKey path: String, parent: String? = nil,
                                              checking check: (_ version: Int32, _ childrenCount: UInt32) throws(Failure) -> Void)
        throws(Failure) -> Node? {
        precondition(!Self.isRoot(path), "the root cannot be removed")
        var refusal: Failure?
        let removed = withDirectory(of: path, parent: parent) { directory, name -> Node? in
            let location = directory.locate(name)
            guard location.found else { return nil }
            let (version, childrenCount) = directory.chunks[location.chunk].withUnsafeBufferPointer { entries in
                (entries[location.position].node!.version, entries[location.position].node!.childrenCount)
            }
            do throws(Failure) {
                try check(version, childrenCount)
            } catch {
                refusal = error
                return nil
            }
            return directory.removeNode(at: location)
        }
        if let refusal { throw refusal }
        guard let childrenVersion = removed?.childrenVersion else { return nil }
        count -= 1
        didRemove(childrenVersion: childrenVersion, at: path)
        return removed
    }

    /// Up to `limit` names of the children of `parent` after `cursor` (all from the first when nil),
    /// in order, and whether more follow.
    func childNames(of parent: String, after cursor: String?, limit: Int) -> (names: [String], more: Bool) {
        precondition(limit >= 0)
        guard let chunks = directories[parent]?.chunks else { return ([], false) }
        var chunkIndex = 0, position = 0
        if let cursor {
            // The first name after the cursor's bytes (a cursor need not be a child).
            chunkIndex = NameOrder.chunkIndex(in: chunks) { NameOrder.order($0.name, cursor) <= 0 }
            position = NameOrder.position(in: chunks[chunkIndex]) { NameOrder.order($0.name, cursor) <= 0 }
            if position == chunks[chunkIndex].count { chunkIndex += 1; position = 0 }
        }
        var result: [String] = []
        result.reserveCapacity(Swift.min(limit, chunks.count * Self.chunkMax))
        while chunkIndex < chunks.count && result.count < limit {
            let chunk = chunks[chunkIndex]
            let taken = Swift.min(chunk.count - position, limit - result.count)
            for entry in chunk[position..<(position + taken)] { result.append(entry.name) }
            position += taken
            if position == chunk.count { chunkIndex += 1; position = 0 }
        }
        return (result, chunkIndex < chunks.count)
    }

    /// Each child of `parent` in name order.
    func forEachChild(of parent: String, _ body: (_ name: String, _ node: Node) -> Void) {
        guard let directory = directories[parent] else { return }
        for chunk in directory.chunks {
            for entry in chunk { body(entry.name, entry.node!) }
        }
    }

    /// Paths of the nodes that `predicate` selects (a path is built only for those).
    func paths(where predicate: (Node) -> Bool) -> [String] {
        var result: [String] = []
        if predicate(root!) { result.append(NamespacePath.root) }
        for (parent, directory) in directories {
            for chunk in directory.chunks {
                for entry in chunk where predicate(entry.node!) { result.append(NamespacePath.child(entry.name, of: parent)) }
            }
        }
        return result
    }

    /// How many nodes `predicate` selects, the root included (no path is built).
    func countNodes(where predicate: (Node) -> Bool) -> Int {
        var result = predicate(root!) ? 1 : 0
        for (_, directory) in directories {
            for chunk in directory.chunks { result += chunk.reduce(0) { $0 + (predicate($1.node!) ? 1 : 0) } }
        }
        return result
    }

    /// Depth first from the root, children in name order; `visit` returns whether to descend.
    func walk(_ visit: (_ path: String, _ node: Node) -> Bool) {
        var stack: [(path: String, node: Node)] = [(NamespacePath.root, root!)]
        while let (path, node) = stack.popLast() {
            guard visit(path, node), let directory = directories[path] else { continue }
            // Reverse order on the stack pops children in name order.
            for chunk in directory.chunks.reversed() {
                for entry in chunk.reversed() { stack.append((NamespacePath.child(entry.name, of: path), entry.node!)) }
            }
        }
    }

    /// Recovery: the children of `parent`, given in strictly increasing name order (UTF-8 bytes), as
    /// full chunks. `parent` has no children yet.
    mutating func adopt(_ parent: String, sortedChildren entries: [Entry]) {
        guard !entries.isEmpty else { return }
        precondition(directories[parent]?.chunks.isEmpty ?? true, "children adopted twice")
        var directory = Directory()
        directory.chunks.reserveCapacity((entries.count + Self.chunkMax - 1) / Self.chunkMax)
        var start = 0
        while start < entries.count {
            let end = min(start + Self.chunkMax, entries.count)
            directory.chunks.append(Array(entries[start..<end]))
            start = end
        }
        directories[parent] = directory
        count += entries.count
    }

    /// Recovery: the root, once read.
    mutating func setRoot(_ node: Node) { root = node }
}

extension NodeTree.Directory {
    typealias Location = (chunk: Int, position: Int, found: Bool)

    /// Where `name` (bytes of a path) is, by its bytes, else, for a non-ASCII name, by Swift's `==`
    /// (which the full-path keys used: a path spelled another way names the same node), or where it would go.
    func locate(_ name: UnsafeBufferPointer<UInt8>) -> Location {
        guard !chunks.isEmpty else { return (0, 0, false) }
        let last = chunks.count - 1
        let location: Location
        // The last name first: a lock's directory (its one waiter), a parent with one child, the
        // newest of numbered children, is found by one comparison (a search took three).
        let lastOrder = NameOrder.order(chunks[last][chunks[last].count - 1].name, name)
        if lastOrder == 0 { return (last, chunks[last].count - 1, true) }
        if lastOrder < 0 {
            location = (last, chunks[last].count, false)  // after the last name: no search
        } else {
            let index = NameOrder.chunkIndex(in: chunks) { NameOrder.order($0.name, name) < 0 }
            let position = NameOrder.position(in: chunks[index]) { NameOrder.order($0.name, name) < 0 }
            if position < chunks[index].count && NameOrder.order(chunks[index][position].name, name) == 0 {
                return (index, position, true)
            }
            location = (index, position, false)
        }
        if !NameOrder.isASCII(name) {
            let spelled = String(decoding: name, as: UTF8.self)
            for (index, chunk) in chunks.enumerated() {
                if let position = chunk.firstIndex(where: { $0.name == spelled }) { return (index, position, true) }
            }
        }
        return location
    }

    /// A stored node, in place; it stays (removing is `remove(at:)`).
    subscript(nodeAt location: Location) -> Node? {
        // Read in place: a removal's check reads the node it removes (a `get` copied it).
        _read { yield chunks[location.chunk][location.position].node }
        _modify {
            yield &chunks[location.chunk][location.position].node
            precondition(chunks[location.chunk][location.position].node.isSome, "remove a node with removeValue")
        }
    }

    /// The largest emptied chunk kept as `spare`.
    static let spareCapacityMax = 4

    mutating func insert(_ entry: consuming NodeTree.Entry, at location: Location) {
        guard !chunks.isEmpty else {
            // Into the spare chunk's storage and the chunk list's (kept by the removal that emptied them).
            var chunk: [NodeTree.Entry] = []
            swap(&chunk, &spare)
            chunk.append(entry)
            chunks.append(chunk)
            return
        }
        // Entries are moved, never copied: `Array.insert` copies the new entry in and releases the
        // original, and a split by slices copies every entry and releases the old chunk's (each copy
        // retains the name and the node's arrays).
        chunks[location.chunk].append(entry)
        chunks[location.chunk].withUnsafeMutableBufferPointer { chunk in
            let base = chunk.baseAddress!, last = chunk.count - 1
            guard location.position < last else { return }
            let moving = (base + last).move()
            (base + location.position + 1).moveInitialize(from: base + location.position, count: last - location.position)
            (base + location.position).initialize(to: moving)
        }
        if chunks[location.chunk].count > NodeTree.chunkMax {
            // Two arrays of their own size (a half left in the old buffer would keep its capacity).
            var full: [NodeTree.Entry] = []
            swap(&full, &chunks[location.chunk])
            let half = full.count / 2
            let (head, tail) = full.withUnsafeMutableBufferPointer { entries in
                let halves = (Self.moved(from: entries, 0..<half), Self.moved(from: entries, half..<entries.count))
                // What was moved out is left as trivial entries, so releasing the old buffer releases nothing twice.
                entries.baseAddress!.initialize(repeating: NodeTree.Entry(name: "", node: nil), count: entries.count)
                return halves
            }
            chunks[location.chunk] = head
            chunks.insert(tail, at: location.chunk + 1)
        }
    }

    /// A new array of `range`'s entries, moved out of `entries` (left uninitialized there).
    private static func moved(from entries: UnsafeMutableBufferPointer<NodeTree.Entry>, _ range: Range<Int>) -> [NodeTree.Entry] {
        [NodeTree.Entry](unsafeUninitializedCapacity: range.count) { buffer, count in
            buffer.baseAddress!.moveInitialize(from: entries.baseAddress! + range.lowerBound, count: range.count)
            count = range.count
        }
    }

    /// Removes the entry and hands out its node, moved out of it (`.node` of the removed entry copied
    /// the node and released the entry's).
    mutating func removeNode(at location: Location) -> Node? {
        var entry = chunks[location.chunk].remove(at: location.position)
        if chunks[location.chunk].isEmpty {
            // The last chunk goes with `removeLast`, which keeps the list's capacity; its own storage
            // is kept too if small.
            if chunks.count == 1 {
                let emptied = chunks.removeLast()
                if emptied.capacity <= Self.spareCapacityMax { spare = emptied }
            } else {
                chunks.remove(at: location.chunk)
            }
        }
        return entry.node.take()
    }
}
