import BatonProtocol
import DequeModule

typealias WaiterID = UInt64

/// Where one acquire stands in the recipe, with the data that only that stage has. Whether the
/// acquire was answered is `Waiter.acquireAnswered` (its ticket is pending in `LockManager.tickets` until then).
enum WaiterState {
    /// Waits for an earlier create of the same session on the same lock (see `LockState.creatingSessions`).
    case queuedForCreate
    /// Creating the lock node and missing ancestors as containers (innermost last). `abandoned`: the
    /// acquire already ended; whatever the answer in flight reports is undone.
    case ensuringLock(ancestors: [String], abandoned: Bool)
    /// The waiter node's create is in flight.
    case creating(abandoned: Bool)
    /// A create's outcome is unknown: looking for the node among the lock's children. `rejected`:
    /// nodes named like ours that belong to another session.
    case recovering(rejected: Set<String>, abandoned: Bool)
    /// The node exists; not entitled yet (watching the node it waits behind) or being judged.
    case waiting(Waiting)
    /// Entitled: the one read that re-checks the node (and arms the holder's watch) is in flight.
    case granting
    case holding(Hold)
    /// The node is being deleted (release, cancel, timeout, lease, try, refusal); retried until gone.
    /// `releaseAnswered`: the release that asked for it was told already (a failure while retrying).
    case removing(releaseAnswered: Bool)
}

/// What a waiting acquire has established so far.
struct Waiting {
    /// Kind, permits and queue bound were checked against the earlier nodes.
    var kindChecked = false
    /// A foreign semaphore node's permits are being read.
    var permitCheckInFlight = false
    /// Passed the deadlock check when it first had to wait (PROTOCOL.md §12.10): in the wait-for graph.
    var deadlockChecked = false
}

/// A current hold.
struct Hold {
    var grantedMilliseconds: UInt64
    /// When the lease ends (a renewal moves it); 0 without a lease.
    var leaseDeadlineMilliseconds: UInt64
    /// Acquires of the owner this hold answers; the node goes when releases bring it to zero.
    var count: UInt32 = 1
}

/// The state's name, for comparisons and messages.
enum WaiterPhase: Equatable {
    case queuedForCreate, ensuringLock, creating, recovering, waiting, granting, holding, removing
}

/// One acquire, from the request until its node is gone.
/// Not generic over the owner's ticket (kept by the manager, `ticketSlots`): generic code in the
/// manager would look up this type's metadata at run time on every use.
final class Waiter {
    let id: WaiterID
    let session: UInt64
    let clientName: String
    /// The lock it waits on: the one in `LockManager.locks` at its path for as long as the waiter is
    /// known (a lock leaves that table only without members), so no path lookup finds it.
    let lock: LockState
    var lockPath: String { lock.path }
    let kind: LockKind
    let permits: UInt32
    let isTry: Bool
    let leaseMilliseconds: UInt32
    let queuedMilliseconds: UInt64
    /// The owner token of a reentrant acquire; empty: none (PROTOCOL.md §12.9).
    let owner: String
    /// The holder accepts revocation requests (PROTOCOL.md §12.11).
    let revocable: Bool
    /// Kept from everyone this long if the session dies holding (PROTOCOL.md §12.12); 0: off.
    let lockDelayMilliseconds: UInt32

    var state: WaiterState = .queuedForCreate
    /// The waiter node's name and full path, once created (set together by `adopt`).
    private(set) var name: WaiterName?
    /// The waiter node's full path, once created (kept: it is needed on every step of the recipe).
    private(set) var nodePath: String?

    /// The node this waiter created, `name` under the lock node. `path` is the node's full path as
    /// the namespace reported it: kept when it is the lock path, a slash and the name (always, for the
    /// namespaces here), so the path is not built again; otherwise built from the lock path.
    func adoptNode(_ name: WaiterName, path: String) {
        self.name = name
        nodePath = Waiter.isChild(path, of: lockPath) ? path : lockPath + "/" + name.name
    }

    /// Whether `path` is `lockPath`, a slash and a waiter node's name (compared as bytes: the generic
    /// `starts(with:)` over UTF-8 views cost more than the rest of the adoption).
    static func isChild(_ path: String, of lockPath: String) -> Bool {
        var path = path
        var lockPath = lockPath
        return path.withUTF8 { child in
            lockPath.withUTF8 { parent in
                guard child.count == parent.count + 1 + WaiterName.nameBytes,
                      child[parent.count] == UInt8(ascii: "/") else { return false }
                // `ByteWords`: eight bytes at a time (a byte loop was ~0.7 % of a lock pair).
                return ByteWords.order(UnsafeBufferPointer(rebasing: child[..<parent.count]), parent) == 0
            }
        }
    }

    /// Its index in its lock's `members`; -1 once it left.
    var memberIndex = -1
    /// Named while its lock's only member: its entry in `LockState.bySequence` is not made until a
    /// second member enters (`LockState.enter`); it goes with the waiter (`LockManager.forget`).
    var bySequenceDeferred = false
    /// Left `LockManager.waiters` (`forget`): answers still due for it are dropped.
    var forgotten = false
    /// The acquire got its reply (granted or failed): its ticket left `LockManager.tickets` and its
    /// slot then, so ending the waiter needs no lookup of either.
    var acquireAnswered = false
    /// The pending acquire's ticket is in `LockManager.tickets` (one that came while none was pending
    /// enters only if its step left it unanswered: `LockManager.unenteredAcquire`).
    var ticketEntered = false
    /// Where the manager keeps this waiter's pending acquire's ticket and its release's
    /// (`LockManager.ticketSlots`); -1: none.
    var ticketSlot = -1
    var releaseTicketSlot = -1
    /// Creation transaction of the node: the fencing token.
    var token: UInt64 = 0
    /// `LockState.listingsIssued` when the create was issued: a later listing must show the node.
    var createIssuedListing: UInt64 = 0
    var createAttempts = 0
    /// The node this waiter waits behind, or (holder) its own node.
    var watchedPath: String?
    /// The local waiter whose node that is, when waited behind without a watch (`LockManager.waitBehind`).
    var watchedWaiter: Waiter?
    /// The local waiters waiting behind this one's node without a watch (`LockManager.waitBehind`):
    /// told when it goes (`LockManager.forget`).
    var waitersBehind: WaiterIDs?
    /// A waiting waiter also watches its own node (see `LockManager.watchOwnNode`).
    var watchesOwnNode = false
    /// Retries (of whatever the state does) scheduled: a retry deadline of an older one is stale.
    var retryGeneration: UInt64 = 0
    var retryDelayMilliseconds: UInt64 = 0

    init(id: WaiterID, session: UInt64, clientName: String, request: LockRequest, lock: LockState, queuedMilliseconds: UInt64) {
        precondition(lock.path == request.path)
        self.id = id
        self.session = session
        self.clientName = clientName
        self.lock = lock
        self.kind = request.kind
        self.permits = request.kind == .semaphore ? request.permits : 1
        self.isTry = request.waitMilliseconds == 0
        self.leaseMilliseconds = request.leaseMilliseconds
        self.queuedMilliseconds = queuedMilliseconds
        self.owner = request.owner
        self.revocable = request.revocable
        self.lockDelayMilliseconds = request.lockDelayMilliseconds
    }

    var phase: WaiterPhase {
        switch state {
        case .queuedForCreate: .queuedForCreate
        case .ensuringLock: .ensuringLock
        case .creating: .creating
        case .recovering: .recovering
        case .waiting: .waiting
        case .granting: .granting
        case .holding: .holding
        case .removing: .removing
        }
    }

    /// The waiting state's data (nil unless waiting); setting it requires waiting.
    var waiting: Waiting? {
        get { if case .waiting(let waiting) = state { waiting } else { nil } }
        set {
            guard let newValue, case .waiting = state else { preconditionFailure("not waiting") }
            state = .waiting(newValue)
        }
    }

    /// The hold's data (nil unless holding); setting it requires holding.
    var hold: Hold? {
        get { if case .holding(let hold) = state { hold } else { nil } }
        set {
            guard let newValue, case .holding = state else { preconditionFailure("not holding") }
            state = .holding(newValue)
        }
    }

    /// The node's create (or its lock node's) is in flight: the waiter holds its session's create
    /// slot on the lock (see `LockState.creatingSessions`).
    var isCreatingNode: Bool {
        switch state {
        case .ensuringLock, .creating, .recovering: true
        default: false
        }
    }

    /// The acquire ended while its create was in flight, or its node is being deleted.
    var isAbandoned: Bool {
        switch state {
        case .ensuringLock(_, let abandoned), .creating(let abandoned), .recovering(_, let abandoned): abandoned
        case .removing: true
        default: false
        }
    }

    /// Marks an in-flight create abandoned (the answer in flight undoes it).
    func abandonCreate() {
        switch state {
        case .ensuringLock(let ancestors, _): state = .ensuringLock(ancestors: ancestors, abandoned: true)
        case .creating: state = .creating(abandoned: true)
        case .recovering(let rejected, _): state = .recovering(rejected: rejected, abandoned: true)
        default: preconditionFailure("no create in flight")
        }
    }
}

/// A non-empty set of waiters: a session's (`LockManager.sessions`), those interested in a node
/// (`NodeWatch`). Nearly always one (a client waits for one lock at a time; one waiter waits behind
/// a node), kept then without a set's storage: no allocation per acquire or watch. nil: none.
enum WaiterIDs: Sequence {
    case one(WaiterID)
    /// Two or more.
    case many(Set<WaiterID>)

    var count: Int {
        switch self {
        case .one: 1
        case .many(let ids): ids.count
        }
    }

    /// Without a boxed closure: iterating the usual single waiter allocates nothing.
    struct Iterator: IteratorProtocol {
        var one: WaiterID?
        var many: Set<WaiterID>.Iterator?

        mutating func next() -> WaiterID? {
            if let id = one {
                one = nil
                return id
            }
            return many?.next()
        }
    }

    func makeIterator() -> Iterator {
        switch self {
        case .one(let id): Iterator(one: id, many: nil)
        case .many(let ids): Iterator(one: nil, many: ids.makeIterator())
        }
    }
}

extension Optional where Wrapped == WaiterIDs {
    /// Adds a waiter, as a set does: a second insert of one is a no-op (a waiter may watch its own
    /// node twice, waiting and then holding). Through a dictionary's `modify`: one hash of the key.
    mutating func insert(_ id: WaiterID) {
        switch self {
        case nil: self = .one(id)
        case .one(let first)?:
            if first != id { self = .many([first, id]) }
        case .many(var ids)?:
            self = nil // the set's storage unshared, so `insert` does not copy it
            ids.insert(id)
            self = .many(ids)
        }
    }

    /// Adds a waiter unless `answered`, shown the waiters already there, says the acquire was answered
    /// from them (true then). Through a dictionary's `modify`: one hash of the key for both.
    mutating func insert(_ id: WaiterID, unless answered: (WaiterIDs) -> Bool) -> Bool {
        if let current = self, answered(current) { return true }
        insert(id)
        return false
    }

    /// Removes a waiter (nil after the last one; a dictionary's entry goes with it).
    mutating func remove(_ id: WaiterID) {
        switch self {
        case nil: break
        case .one(let only)?: if only == id { self = nil }
        case .many(var ids)?:
            self = nil
            ids.remove(id)
            self = ids.count == 1 ? .one(ids.first!) : .many(ids)
        }
    }
}

/// The manager's view of one lock: its local waiters and the one listing it keeps in flight.
final class LockState {
    let path: String
    /// Its local waiters (those of `LockManager.waiters` on this lock), in no order: each knows its
    /// index (`Waiter.memberIndex`), so entering and leaving hash nothing (`enter`, `leave`).
    private(set) var members: [Waiter] = []
    /// Local waiters by their node's sequence (unique under one lock; the name is checked on use).
    /// Each entry goes when its waiter is forgotten (or overwritten by a namesake's, which goes then),
    /// so the references back to the lock (`Waiter.lock`) end with the lock's last member. A lone
    /// member's entry is made only when a second member enters (`Waiter.bySequenceDeferred`).
    var bySequence: [UInt64: Waiter] = [:]
    /// Local waiters with a node, by sequence (for the wait-for graph, LockManager+Deadlock): the
    /// waiters themselves, not their ids (no hash to read a sequence). Each leaves when forgotten.
    var localOrder: Deque<Waiter> = []
    /// Sessions with a create in flight on this lock. A session's creates on one lock go one at a
    /// time, so that after a lost reply the one untracked node named with the session is that create's.
    var creatingSessions = SmallSet<UInt64>()
    var createBacklog: Deque<WaiterID> = []
    /// Local semaphore waiters in any phase (a lock without any never needs a children watch).
    var semaphoreMembers = 0
    /// Waiters to judge with the next listing; `judgeEveryone` after a children watch or a failure.
    var toJudge: Set<WaiterID> = []
    var judgeEveryone = false
    var listingsIssued: UInt64 = 0
    var listingInFlight = false
    var listingWanted = false
    var listingRetryScheduled = false
    var childrenWatchArmed = false
    var childrenWatchGeneration: UInt64 = 0
    /// The lock's waiter nodes as this manager knows them, in sequence order (see LockManager+Queue).
    var queue: Deque<WaiterName> = []
    /// The queue may be judged from: a listing established it and nothing since made it doubtful.
    var queueTrusted = false
    /// Every waiter node with a lower sequence that exists is in `queue`.
    var sequenceAccounted: UInt64 = 0
    /// The lock node's creation transaction, as the last create under it reported.
    var queueLockIdentity: UInt64?
    /// A re-judgement is scheduled for when the lock's lock-delay ends (at this time).
    var delayRecheckAt: UInt64?

    /// The last path given to a waiter node's create (`WaiterName.createPath`), with its kind and session:
    /// one session acquiring the lock again and again makes it once.
    private var recentCreate: (kind: LockKind, session: UInt64, path: String)?
    /// The paths made for other sessions while the lock had several (its sessions taking turns, each
    /// acquiring again: a path made per acquire was ~2 % of a contended grant), at most
    /// `createPathsMax`; dropped when the lock goes idle (`clearForIdle`).
    private var createPaths: [UInt64: (kind: LockKind, path: String)] = [:]
    static let createPathsMax = 64

    init(path: String) { self.path = path }

    /// What a waiter node's create under this lock is given: its path less the sequence.
    func createPath(kind: LockKind, session: UInt64) -> String {
        if let recentCreate, recentCreate.session == session, recentCreate.kind == kind { return recentCreate.path }
        // Another session than the last: kept for it while others have members here too (one hash).
        let shared = members.count > 1
        if shared, let kept = createPaths[session], kept.kind == kind {
            recentCreate = (kind, session, kept.path)
            return kept.path
        }
        let made = WaiterName.createPath(lockPath: path, kind: kind, session: session)
        if shared {
            if createPaths.count >= Self.createPathsMax { createPaths.removeAll(keepingCapacity: true) }
            createPaths[session] = (kind, made)
        }
        recentCreate = (kind, session, made)
        return made
    }

    /// Paths kept for sessions (for tests).
    var createPathCount: Int { createPaths.count }

    func enter(_ waiter: Waiter) {
        precondition(waiter.memberIndex < 0)
        if members.count == 1, members[0].bySequenceDeferred, let name = members[0].name {
            // A second member: the first one's entry, deferred while it was alone, is made now.
            members[0].bySequenceDeferred = false
            bySequence[name.sequence] = members[0]
        }
        waiter.memberIndex = members.count
        members.append(waiter)
    }

    /// False if it was no member.
    func leave(_ waiter: Waiter) -> Bool {
        let index = waiter.memberIndex
        guard index >= 0 else { return false }
        waiter.memberIndex = -1
        let last = members.removeLast()
        if last !== waiter {
            members[index] = last
            last.memberIndex = index
        }
        return true
    }

    /// Lets go of the waiters it holds (`LockManager.deinit`: the manager is going).
    func dropWaiters() {
        members.removeAll()
        bySequence.removeAll()
        localOrder.removeAll()
    }

    /// Kept while the lock has no local waiter (`LockManager.queueRetire`): what a new state would
    /// hold, but the queue's knowledge (trusted, empty, identity, sequences accounted) and the
    /// tables' storage. The listing serial keeps counting (answers of earlier listings are not due).
    func clearForIdle() {
        precondition(members.isEmpty && semaphoreMembers == 0 && queue.isEmpty && !listingInFlight)
        if !bySequence.isEmpty { bySequence.removeAll(keepingCapacity: true) }
        if !localOrder.isEmpty { localOrder.removeAll(keepingCapacity: true) }
        creatingSessions.removeAll()
        if !createBacklog.isEmpty { createBacklog.removeAll(keepingCapacity: true) }
        if !toJudge.isEmpty { toJudge.removeAll(keepingCapacity: true) }
        judgeEveryone = false
        listingWanted = false
        delayRecheckAt = nil
        if !createPaths.isEmpty { createPaths = [:] }
    }
}

/// A set that nearly always holds none or one element (a lock's sessions with a create in flight,
/// `LockState.creatingSessions`: the embedded namespace answers a create at once; a connection's
/// waiting acquires, in the engine): one kept without hashing, the rest in a set.
public struct SmallSet<Element: Hashable>: Sequence {
    private var only: Element?
    private var others: Set<Element> = []

    public init() {}

    public var isEmpty: Bool { only == nil && others.isEmpty }
    public var count: Int { (only == nil ? 0 : 1) + others.count }

    public func contains(_ element: Element) -> Bool {
        only == element || (!others.isEmpty && others.contains(element))
    }

    /// As `Set.insert`: false if it was there already.
    @discardableResult
    public mutating func insert(_ element: Element) -> Bool {
        if contains(element) { return false }
        if only == nil { only = element } else { others.insert(element) }
        return true
    }

    /// False if it was not there.
    @discardableResult
    public mutating func remove(_ element: Element) -> Bool {
        if only == element {
            only = nil
            return true
        }
        return !others.isEmpty && others.remove(element) != nil
    }

    public mutating func removeAll() {
        only = nil
        if !others.isEmpty { others.removeAll(keepingCapacity: true) }
    }

    public func makeIterator() -> IndexingIterator<[Element]> {
        ((only.map { [$0] } ?? []) + Array(others)).makeIterator()
    }
}

/// One exists-watch the manager holds in the namespace, shared by every local waiter interested in the node.
struct NodeWatch {
    /// nil: nobody any more (the entry stays until the watch fires).
    var interested: WaiterIDs?
    let generation: UInt64
}

enum DeadlineAction {
    case waitTimeout(WaiterID)
    case lease(WaiterID)
    /// Retry what the waiter's state does (its namespace call failed with `storageFailure`).
    case retry(WaiterID, generation: UInt64)
    case listing(String)
    /// Judge a lock's waiters again: its lock-delay ended.
    case lockDelayEnded(String)
}

struct Deadline: Comparable {
    let atMilliseconds: UInt64
    let order: UInt64
    let action: DeadlineAction

    static func < (left: Deadline, right: Deadline) -> Bool {
        (left.atMilliseconds, left.order) < (right.atMilliseconds, right.order)
    }
    static func == (left: Deadline, right: Deadline) -> Bool {
        left.atMilliseconds == right.atMilliseconds && left.order == right.order
    }
}
