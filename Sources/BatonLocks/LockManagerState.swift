import BatonProtocol
import DequeModule

typealias WaiterID = UInt64

/// Where one acquire stands in the recipe.
enum WaiterPhase: Equatable {
    /// Waits for an earlier create of the same session on the same lock (see `LockState.creatingSessions`).
    case queuedForCreate
    /// Creating the lock node (and missing ancestors) as containers.
    case ensuringLock
    /// The waiter node's create is in flight.
    case creating
    /// A create's outcome is unknown: looking for the node among the lock's children.
    case recovering
    /// The node exists; not entitled yet (watching the node it waits behind) or being judged.
    case waiting
    /// Entitled: re-checking that the node exists and the session lives before granting.
    case granting
    case holding
    /// The node is being deleted (release, cancel, timeout, lease, try, refusal); retried until gone.
    case removing
}

enum RetryAction {
    case ensureLock
    case recover
    case grantCheck
    case delete
}

/// One acquire, from the request until its node is gone.
/// Not generic over the owner's ticket (kept by the manager, `ticketOf`): generic code in the
/// manager would look up this type's metadata at run time on every use.
final class Waiter {
    let id: WaiterID
    let session: UInt64
    let clientName: String
    let lockPath: String
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
    /// Acquires of `owner` this hold answers; the node goes when releases bring it to zero.
    var holdCount: UInt32 = 1
    /// Passed the deadlock check when it first had to wait (PROTOCOL.md §12.10): in the wait-for graph.
    var deadlockChecked = false
    /// When the lease ends (a renewal moves it); meaningful while holding with `leaseMilliseconds` > 0.
    var leaseDeadlineMilliseconds: UInt64 = 0

    var phase: WaiterPhase = .queuedForCreate
    var name: WaiterName? {
        didSet { nodePath = name.map { lockPath + "/" + $0.name } }
    }
    /// The waiter node's full path, once created (kept: it is needed on every step of the recipe).
    private(set) var nodePath: String?
    /// Creation transaction of the node: the fencing token.
    var token: UInt64 = 0
    /// The acquire got its reply (granted or failed).
    var answered = false
    /// The manager wants this waiter's node gone (its acquire ended without a hold, or the hold ended).
    var abandoned = false
    /// Kind, permits and queue bound were checked against the earlier nodes.
    var kindChecked = false
    var permitCheckInFlight = false
    /// `LockState.listingsIssued` when the create was issued: a later listing must show the node.
    var createIssuedListing: UInt64 = 0
    var createAttempts = 0
    var holdsCreateSlot = false
    /// Nodes named like ours that recovery found but that belong to another session.
    var rejectedNodes: Set<String> = []
    /// Ancestors still to create as containers, innermost last.
    var ensureStack: [String] = []
    var grantedMilliseconds: UInt64 = 0
    /// The node this waiter waits behind, or (holder) its own node.
    var watchedPath: String?
    /// A waiting waiter also watches its own node (see `LockManager.watchOwnNode`).
    var watchesOwnNode = false
    var retryAction: RetryAction?
    var retryGeneration: UInt64 = 0
    var retryDelayMilliseconds: UInt64 = 0
    var releaseAnswered = false

    init(id: WaiterID, session: UInt64, clientName: String, request: LockRequest, queuedMilliseconds: UInt64) {
        self.id = id
        self.session = session
        self.clientName = clientName
        self.lockPath = request.path
        self.kind = request.kind
        self.permits = request.kind == .semaphore ? request.permits : 1
        self.isTry = request.waitMilliseconds == 0
        self.leaseMilliseconds = request.leaseMilliseconds
        self.queuedMilliseconds = queuedMilliseconds
        self.owner = request.owner
        self.revocable = request.revocable
        self.lockDelayMilliseconds = request.lockDelayMilliseconds
    }
}

/// The manager's view of one lock: its local waiters and the one listing it keeps in flight.
final class LockState {
    let path: String
    var members: Set<WaiterID> = []
    /// Local waiters by their node's sequence (unique under one lock; the name is checked on use).
    var bySequence: [UInt64: WaiterID] = [:]
    /// Local waiters with a node, by sequence (for the wait-for graph, LockManager+Deadlock).
    var localOrder: Deque<WaiterID> = []
    /// Sessions with a create in flight on this lock. A session's creates on one lock go one at a
    /// time, so that after a lost reply the one untracked node named with the session is that create's.
    var creatingSessions: Set<UInt64> = []
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

    init(path: String) { self.path = path }
}

/// A trusted, empty queue of a lock the manager no longer tracks (see `LockManager.queueRetire`).
struct IdleQueue {
    var lockIdentity: UInt64
    var sequenceAccounted: UInt64
}

/// One exists-watch the manager holds in the namespace, shared by every local waiter interested in the node.
struct NodeWatch {
    var interested: Set<WaiterID>
    let generation: UInt64
}

enum DeadlineAction {
    case waitTimeout(WaiterID)
    case lease(WaiterID)
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

/// What a listing says about one waiter: whether its node is there and what is before it.
struct WaiterStanding {
    var present = false
    var position = 0
    var previous: WaiterName?
    var nearestExclusive: WaiterName?
    var nearestSemaphore: WaiterName?
    var exclusiveOrSharedBefore = false
}
