import BatonProtocol
import Collections

/// Counters that must never go back, and recovery.
///
/// The transaction id (zxid) is the fencing token of every lock grant and each parent's sequence
/// counter names the waiters, so neither may ever hand out a value twice, even after kill -9.
/// Ephemeral nodes are not logged (they die with the process anyway), so a grant does not by
/// itself write anything durable. Instead each counter persists a high-water mark ahead of use:
/// when the next value reaches the reserved mark, a `reserve…(upTo: value + ahead)` record goes to
/// the outbox *before* the change that uses the value (and so before any reply that carries it;
/// the server sends replies only after the records queued before them are durable). Recovery
/// restarts each counter at its mark, above anything handed out before the crash. Cost: one log
/// record per `transactionReserveAhead` writes and per `sequenceReserveAhead` sequential children
/// of a parent; a restart skips at most that many values.
extension Namespace {
    func allocateTransaction(_ changes: inout Changes) -> UInt64 {
        let next = transactionCurrent + 1
        if next >= transactionReserved {
            transactionReserved = next + configuration.transactionReserveAhead
            changes.log(.reserveTransactions(upTo: transactionReserved))
        }
        transactionCurrent = next
        return next
    }

    /// The parent's counters once it has handed out `next` (the caller has checked it is in range):
    /// a new reservation bound if `reserved` is reached. Stored in the create's one access to the
    /// parent (each tree access costs a path lookup); `logSequence` logs the bound once the create
    /// cannot fail any more.
    func sequenceAfter(next: UInt64, reserved: UInt64) -> (next: UInt64, reserved: UInt64) {
        guard next >= reserved else { return (next + 1, reserved) }
        return (next + 1, next + configuration.sequenceReserveAhead)
    }

    /// Logs the reservation bound `sequenceAfter` moved, if it did.
    func logSequence(_ parentPath: String, next: UInt64, reserved: UInt64, _ changes: inout Changes) {
        guard next >= reserved else { return }
        let upTo = sequenceAfter(next: next, reserved: reserved).reserved
        changes.log(.reserveSequence(parent: parentPath, upTo: upTo))
        sequenceHighWater = max(sequenceHighWater, upTo)
    }

    /// Rebuilds a namespace from a snapshot (or nothing) and the log records written after it.
    /// Records already contained in the snapshot (transaction not above the snapshot's) are skipped.
    public convenience init(configuration: NamespaceConfiguration, now: Time,
                            random: some RandomNumberGenerator = SystemRandomNumberGenerator(),
                            recoveringFrom snapshot: [UInt8]?,
                            records: some Sequence<[UInt8]>) throws(RecoveryError) {
        self.init(configuration: configuration, now: now, random: random)
        if let snapshot { try restore(from: snapshot) }
        for record in records { try replay(record) }
        finishRecovery(now: now)
    }

    /// Re-applies one log record during recovery (before the namespace is used).
    public func replay(_ bytes: [UInt8]) throws(RecoveryError) {
        try replay(NamespaceRecord.decode(bytes))
    }

    public func replay(_ record: NamespaceRecord) throws(RecoveryError) {
        switch record {
        case .create(let transaction, let wallMilliseconds, let path, let data, let kind, let parentChildrenVersion):
            guard transaction > transactionCurrent else { return }
            guard kind != .ephemeral else { throw RecoveryError("ephemeral node \(path) in the log") }
            guard path != NamespacePath.root, path.utf8.first == UInt8(ascii: "/") else { throw RecoveryError("bad path \(path)") }
            let parentPath = NamespacePath.parent(of: path)
            guard let parent = nodes[parentPath], parent.kind != .ephemeral else {
                throw RecoveryError("create \(path): no parent")
            }
            guard !nodes.contains(path) else { throw RecoveryError("create \(path): exists") }
            applyCreate(path, parentPath: parentPath, data: data, kind: kind, owner: 0, transaction: transaction,
                        wallMilliseconds: wallMilliseconds, parentChildrenVersion: parentChildrenVersion)
            transactionCurrent = transaction
        case .delete(let transaction, let path, let parentChildrenVersion),
             .sweepContainer(let transaction, let path, let parentChildrenVersion):
            guard transaction > transactionCurrent else { return }
            guard path != NamespacePath.root, let node = nodes[path] else { throw RecoveryError("delete \(path): no node") }
            guard node.childrenCount == 0 else { throw RecoveryError("delete \(path): has children") }
            applyDelete(path, parentPath: NamespacePath.parent(of: path), transaction: transaction,
                        parentChildrenVersion: parentChildrenVersion)
            transactionCurrent = transaction
        case .set(let transaction, let wallMilliseconds, let path, let data, let version):
            guard transaction > transactionCurrent else { return }
            guard nodes.contains(path) else { throw RecoveryError("set \(path): no node") }
            applySet(path, data: data, version: version, transaction: transaction, wallMilliseconds: wallMilliseconds)
            transactionCurrent = transaction
        case .reserveTransactions(let upTo):
            transactionReserved = max(transactionReserved, upTo)
        case .reserveSequence(let parent, let upTo):
            // The parent may be gone (deleted later in the log); then the mark no longer matters.
            if let node = nodes[parent], node.sequenceReserved < upTo { nodes[parent]!.sequenceReserved = upTo }
            sequenceHighWater = max(sequenceHighWater, upTo)
        case .multi(let records):
            for record in records { try replay(record) }
        }
    }

    /// Counters start at their marks; emptied containers start their grace period now.
    func finishRecovery(now: Time) {
        if transactionReserved > 0 { transactionCurrent = max(transactionCurrent, transactionReserved - 1) }
        // One pass over a million nodes picks both kinds (few of either), sorted out below.
        let selected = nodes.paths { $0.sequenceNext < $0.sequenceReserved || ($0.kind == .container && $0.childrenCount == 0) }
        var emptyContainers: [String] = []
        for path in selected {
            let node = nodes[path]!
            if node.sequenceNext < node.sequenceReserved { nodes[path]!.sequenceNext = node.sequenceReserved }
            // Ephemeral children did not survive the restart: an empty container is swept after
            // the grace, whether or not the log saw it used (its users' sessions are gone).
            if node.kind == .container && node.childrenCount == 0 { emptyContainers.append(path) }
        }
        for path in emptyContainers.sorted() { scheduleSweep(path, now: now) }
    }

    // MARK: Snapshots

    /// A copy of the state to write in the background: O(1) here, serialized on another thread.
    public func snapshot() -> NamespaceSnapshot {
        NamespaceSnapshot(nodes: nodes, transactionCurrent: transactionCurrent, transactionReserved: transactionReserved)
    }

    func restore(from bytes: [UInt8]) throws(RecoveryError) {
        let restored = try NamespaceSnapshot.deserialize(bytes)
        nodes = restored.nodes
        transactionCurrent = restored.transactionCurrent
        transactionReserved = restored.transactionReserved
        sequenceHighWater = restored.sequenceReservedMax
    }

    // MARK: Marks outside the log, and refusing writes

    /// The counters' high-water marks: every transaction id below `transactions`, and every
    /// sequence number below `sequences` under any parent, may have been handed out. The server
    /// keeps them durable outside the log (BatonStore's MARKS files) before replies carry values
    /// beyond them, so that a log cut by a repair cannot send fencing tokens back.
    public var counterMarks: (transactions: UInt64, sequences: UInt64) { (transactionReserved, sequenceHighWater) }

    /// After recovery: restart the counters at or above marks kept outside the log. `sequences`
    /// (set when log records that may have been acknowledged were cut) lifts every parent's
    /// sequence counter, since the cut may have taken a parent's own reservation with it.
    public func raiseCounters(transactions: UInt64, sequences: UInt64?) {
        if transactions > transactionReserved {
            transactionReserved = transactions
            transactionCurrent = max(transactionCurrent, transactions - 1)
        }
        guard let sequences, sequences > 0 else { return }
        sequenceHighWater = max(sequenceHighWater, sequences)
        let behind = nodes.paths { $0.sequenceNext < sequences }
        for path in behind {
            nodes[path]!.sequenceNext = sequences
            nodes[path]!.sequenceReserved = max(nodes[path]!.sequenceReserved, sequences)
        }
    }

    struct RollbackPoint {
        var nodes: NodeTree
        var sessionNodes: TreeDictionary<UInt64, SessionNodes>
        var transactionCurrent, transactionReserved, sequenceHighWater: UInt64
    }

    /// O(1) (see `nodes`): what an operation that fails part-way restores.
    func rollbackPoint() -> RollbackPoint {
        RollbackPoint(nodes: nodes, sessionNodes: sessionNodes,
                      transactionCurrent: transactionCurrent,
                      transactionReserved: transactionReserved, sequenceHighWater: sequenceHighWater)
    }

    func roll(back point: RollbackPoint) {
        nodes = point.nodes
        sessionNodes = point.sessionNodes
        transactionCurrent = point.transactionCurrent
        transactionReserved = point.transactionReserved
        sequenceHighWater = point.sequenceHighWater
    }

    /// While `writeRefusal` is set (the log cannot be written), a client's change that would log a
    /// record (a persistent or container change, or a counter reservation) is undone and refused;
    /// ephemeral changes within the reserved counters go on. Session ends are never refused: the
    /// records they may produce wait in the store's memory until it can write again.
    func refuseIfLogged(_ changes: Changes, _ saved: RollbackPoint) throws(ReplyError) {
        guard let writeRefusal, !changes.records.isEmpty else { return }
        roll(back: saved)
        throw writeRefusal
    }
}
