/// The messages of the wire protocol as Swift values. Layouts: Proto/PROTOCOL.md; codec: Codec.swift.

/// What a node is: kept in its stat and persisted.
public enum NodeKind: UInt8, Sendable, Equatable {
    case persistent = 0
    case ephemeral = 1
    case container = 2
}

/// How to create a node: a kind plus whether the name gets a sequence suffix.
public struct CreateMode: Sendable, Equatable, Hashable {
    public var kind: NodeKind
    public var sequential: Bool
    public init(kind: NodeKind = .persistent, sequential: Bool = false) {
        self.kind = kind
        self.sequential = sequential
    }
    public static let persistent = CreateMode()
    public static let ephemeral = CreateMode(kind: .ephemeral)
    public static let ephemeralSequential = CreateMode(kind: .ephemeral, sequential: true)
    public static let persistentSequential = CreateMode(kind: .persistent, sequential: true)
    public static let container = CreateMode(kind: .container)

    /// Wire flags: bit 0 ephemeral, bit 1 sequential, bit 2 container.
    public var flags: UInt8 {
        var value: UInt8 = sequential ? 0x02 : 0
        switch kind {
        case .persistent: break
        case .ephemeral: value |= 0x01
        case .container: value |= 0x04
        }
        return value
    }

    public init?(flags: UInt8) {
        guard flags & ~0x07 == 0 else { return nil }
        let ephemeral = flags & 0x01 != 0, container = flags & 0x04 != 0
        if ephemeral && container { return nil }
        self.init(kind: ephemeral ? .ephemeral : container ? .container : .persistent, sequential: flags & 0x02 != 0)
    }
}

/// A node's metadata, as in ZooKeeper. Transaction ids (zxids) come from one counter that only grows.
public struct Stat: Sendable, Equatable {
    public var createdTransaction: UInt64 = 0
    public var modifiedTransaction: UInt64 = 0
    /// Transaction that last changed the children list.
    public var childrenTransaction: UInt64 = 0
    public var createdMilliseconds: UInt64 = 0
    public var modifiedMilliseconds: UInt64 = 0
    public var version: Int32 = 0
    public var childrenVersion: Int32 = 0
    /// Session that owns an ephemeral node; 0 otherwise.
    public var ephemeralOwner: UInt64 = 0
    public var dataLength: UInt32 = 0
    public var childrenCount: UInt32 = 0
    public var kind: NodeKind = .persistent

    public init() {}
    public init(createdTransaction: UInt64, modifiedTransaction: UInt64, childrenTransaction: UInt64,
                createdMilliseconds: UInt64, modifiedMilliseconds: UInt64, version: Int32, childrenVersion: Int32,
                ephemeralOwner: UInt64, dataLength: UInt32, childrenCount: UInt32, kind: NodeKind) {
        self.createdTransaction = createdTransaction
        self.modifiedTransaction = modifiedTransaction
        self.childrenTransaction = childrenTransaction
        self.createdMilliseconds = createdMilliseconds
        self.modifiedMilliseconds = modifiedMilliseconds
        self.version = version
        self.childrenVersion = childrenVersion
        self.ephemeralOwner = ephemeralOwner
        self.dataLength = dataLength
        self.childrenCount = childrenCount
        self.kind = kind
    }
    /// Encoded size on the wire.
    public static let wireBytes = 8 * 6 + 4 * 4 + 1
}

public enum LockKind: UInt8, Sendable, Equatable {
    case exclusive = 0
    case shared = 1
    case semaphore = 2
}

/// Wait time of an acquire: 0 is "try" (fail at once with `lockBusy`), `UInt32.max` waits forever.
public struct LockRequest: Sendable, Equatable {
    public var path: String
    public var kind: LockKind
    /// Permits of a semaphore (its first `permits` waiters hold); 1 for the other kinds.
    public var permits: UInt32
    public var waitMilliseconds: UInt32
    /// Maximum hold time; 0 means no lease.
    public var leaseMilliseconds: UInt32
    /// The owner token of a reentrant acquire (`acquireOwned`, PROTOCOL.md §12.9); empty: a plain `acquire`.
    public var owner: String
    /// The holder accepts `revocationRequested` events (PROTOCOL.md §12.11); needs an owner token.
    public var revocable: Bool
    /// If the holder's session dies while holding, nobody is granted the lock for this long
    /// (PROTOCOL.md §12.12); 0: off. Needs an owner token (`acquireOwned`).
    public var lockDelayMilliseconds: UInt32

    public static let waitForever = UInt32.max
    /// Longest owner token in bytes (PROTOCOL.md §12.9).
    public static let ownerBytesMax = 64
    public init(path: String, kind: LockKind = .exclusive, permits: UInt32 = 1,
                waitMilliseconds: UInt32 = LockRequest.waitForever, leaseMilliseconds: UInt32 = 0, owner: String = "",
                revocable: Bool = false, lockDelayMilliseconds: UInt32 = 0) {
        precondition((!revocable && lockDelayMilliseconds == 0) || !owner.isEmpty,
                     "a revocable or lock-delayed acquire names an owner token (acquireOwned)")
        self.path = path
        self.kind = kind
        self.permits = permits
        self.waitMilliseconds = waitMilliseconds
        self.leaseMilliseconds = leaseMilliseconds
        self.owner = owner
        self.revocable = revocable
        self.lockDelayMilliseconds = lockDelayMilliseconds
    }
}

/// One lock of an `acquireAll` (PROTOCOL.md §12.14).
public struct LockSetMember: Sendable, Equatable {
    public var path: String
    public var kind: LockKind
    /// Permits of a semaphore; 1 for the other kinds.
    public var permits: UInt32
    public init(path: String, kind: LockKind = .exclusive, permits: UInt32 = 1) {
        self.path = path
        self.kind = kind
        self.permits = permits
    }

    /// Most locks one `acquireAll` may name (`invalidArgument` beyond).
    public static let countMax = 16
}

/// One hold of a granted `acquireAll`: what `acquire` grants for one lock.
public struct LockSetHold: Sendable, Equatable {
    public var node: String
    public var token: UInt64
    public init(node: String, token: UInt64) {
        self.node = node
        self.token = token
    }
}

/// One operation inside a multi.
public enum MultiOperation: Sendable, Equatable {
    case create(path: String, data: [UInt8], mode: CreateMode)
    case delete(path: String, expectedVersion: Int32)
    case set(path: String, data: [UInt8], expectedVersion: Int32)
    case check(path: String, expectedVersion: Int32)
}

public enum MultiResult: Sendable, Equatable {
    case created(path: String, stat: Stat)
    case deleted
    case set(Stat)
    case checked
}

/// A session's secret: proves the right to resume a session on another connection.
public struct SessionSecret: Sendable, Equatable, Hashable {
    public var high: UInt64
    public var low: UInt64
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Equality in time that does not depend on where the secrets differ (the server checks a
    /// presented secret with it; `==` may stop at the first word that differs).
    public func matchesInConstantTime(_ other: SessionSecret) -> Bool {
        (high ^ other.high) | (low ^ other.low) == 0
    }
}

/// Session flags in `openSession`.
public struct SessionFlags: OptionSet, Sendable, Equatable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Keep the session for its timeout when a Unix-socket connection drops (the default ends it at once).
    public static let keepOnDisconnect = SessionFlags(rawValue: 0x01)
    /// The session accepts `lockResumed` events (an opt-in inside version 1, PROTOCOL.md §3.3, §12.8).
    public static let resumedEvents = SessionFlags(rawValue: 0x02)
    /// Every flag this version defines; other bits are reserved and rejected.
    public static let all: SessionFlags = [.keepOnDisconnect, .resumedEvents]
}

/// Version ZooKeeper-style: -1 matches any version.
public let anyVersion: Int32 = -1

public enum Request: Sendable, Equatable {
    case hello(version: UInt16, clientName: String)
    case openSession(timeoutMilliseconds: UInt32, flags: SessionFlags)
    case resumeSession(sessionID: UInt64, secret: SessionSecret)
    case closeSession
    case ping
    /// Proves a TCP connection may open or resume a session (PROTOCOL.md §4.7); Unix connections need none.
    case authenticate(token: [UInt8])
    case create(path: String, data: [UInt8], mode: CreateMode)
    case delete(path: String, expectedVersion: Int32)
    case exists(path: String, watch: Bool)
    case get(path: String, watch: Bool)
    case set(path: String, data: [UInt8], expectedVersion: Int32)
    /// One page of a node's child names (PROTOCOL.md §5.2): those after `after` (by UTF-8 bytes;
    /// empty: from the first), at most `limit` (0: the server's page size, `childrenPageMax`).
    case children(path: String, watch: Bool, after: String = "", limit: UInt32 = 0)
    case check(path: String, expectedVersion: Int32)
    case multi([MultiOperation])
    /// A watch that stays registered after it fires, on `path` or (recursive) its subtree (PROTOCOL.md §11.1).
    case addWatch(path: String, mode: WatchMode)
    /// Removes the session's watch of that mode on `path` (PROTOCOL.md §11.1).
    case removeWatches(path: String, mode: WatchMode)
    /// An acquire; one whose request names an owner token is sent as `acquireOwned`.
    case acquire(LockRequest)
    /// Ends the hold (or waiting acquire) named by its node and the grant's fencing token (PROTOCOL.md §12.6).
    case release(node: String, token: UInt64)
    case cancel(acquireRequestID: UInt32)
    case checkToken(path: String, token: UInt64)
    case inspect(path: String)
    /// Sets a held lease to end `leaseMilliseconds` after the renewal arrives (PROTOCOL.md §12.5).
    case renew(node: String, token: UInt64, leaseMilliseconds: UInt32)
    /// Asks every revocable holder of the lock at `path` to give it up (PROTOCOL.md §12.11).
    case requestRevocation(path: String)
    /// Ends the holds and waits of the lock at `path` (those of `sessionID` only, unless it is 0: then
    /// every current hold) as if their nodes were deleted: needs `admin` (PROTOCOL.md §12.13).
    case forceRelease(path: String, sessionID: UInt64)
    /// Acquires every lock of `locks` or none (PROTOCOL.md §12.14): one wait for the whole set, one
    /// lease for each hold.
    case acquireAll(locks: [LockSetMember], waitMilliseconds: UInt32, leaseMilliseconds: UInt32)
    /// Writes a consistent snapshot of the namespace to `file`, a path on the daemon's host (PROTOCOL.md §10.8).
    case backup(file: String)

    public var opcode: Opcode {
        switch self {
        case .hello: .hello
        case .openSession: .openSession
        case .resumeSession: .resumeSession
        case .closeSession: .closeSession
        case .ping: .ping
        case .authenticate: .authenticate
        case .create: .create
        case .delete: .delete
        case .exists: .exists
        case .get: .get
        case .set: .set
        case .children: .children
        case .check: .check
        case .multi: .multi
        case .addWatch: .addWatch
        case .removeWatches: .removeWatches
        case .acquire(let lock): lock.owner.isEmpty ? .acquire : .acquireOwned
        case .release: .release
        case .cancel: .cancel
        case .checkToken: .checkToken
        case .inspect: .inspect
        case .renew: .renew
        case .requestRevocation: .requestRevocation
        case .forceRelease: .forceRelease
        case .acquireAll: .acquireAll
        case .backup: .backup
        }
    }
}

/// Where a queued position in a lock stands.
public enum LockPosition: UInt8, Sendable, Equatable {
    case holder = 0
    case waiter = 1
}

/// One line of `inspect`: a holder or a waiter of a lock.
public struct LockEntry: Sendable, Equatable {
    public var node: String
    public var kind: LockKind
    public var position: LockPosition
    public var sessionID: UInt64
    public var clientName: String
    public var token: UInt64
    /// Milliseconds since the entry queued (waiter) or was granted (holder).
    public var ageMilliseconds: UInt64
    public init(node: String, kind: LockKind, position: LockPosition, sessionID: UInt64, clientName: String,
                token: UInt64, ageMilliseconds: UInt64) {
        self.node = node
        self.kind = kind
        self.position = position
        self.sessionID = sessionID
        self.clientName = clientName
        self.token = token
        self.ageMilliseconds = ageMilliseconds
    }
}

/// The body of a successful reply; which case is implied by the request's opcode.
public enum ReplyBody: Sendable, Equatable {
    case hello(version: UInt16, serverName: String, frameBytesMax: UInt32)
    case session(sessionID: UInt64, secret: SessionSecret, timeoutMilliseconds: UInt32)
    case resumed(timeoutMilliseconds: UInt32)
    case empty
    case created(path: String, stat: Stat)
    case exists(Stat?)
    case data(stat: Stat, data: [UInt8])
    case stat(Stat)
    /// `more`: names after the last one remain; ask again with it as `after`.
    case children(stat: Stat, names: [String], more: Bool = false)
    case multi([MultiResult])
    case granted(node: String, token: UInt64)
    /// The reply to `acquireOwned`: the hold and how many acquires of its owner it now counts.
    case held(node: String, token: UInt64, holdCount: UInt32)
    case tokenStatus(current: Bool)
    /// The reply to `requestRevocation`: how many holders were asked.
    case revocation(holdersAsked: UInt32)
    /// The reply to `forceRelease`: how many holds and waits were ended.
    case forceReleased(ended: UInt32)
    case lockEntries([LockEntry])
    /// The reply to `acquireAll`: one hold per lock, in the order of the request.
    case grantedAll([LockSetHold])
    /// The backup is durable in its file: the log position it reflects and its size in bytes.
    case backedUp(lsn: UInt64, bytes: UInt64)
}

public struct Reply: Sendable, Equatable {
    public var requestID: UInt32
    public var opcode: Opcode
    public var result: Result<ReplyBody, ReplyError>
    public init(requestID: UInt32, opcode: Opcode, result: Result<ReplyBody, ReplyError>) {
        self.requestID = requestID
        self.opcode = opcode
        self.result = result
    }
}

public enum WatchEventType: UInt8, Sendable, Equatable {
    case created = 1
    case deleted = 2
    case dataChanged = 3
    case childrenChanged = 4
}

/// Why a hold ended other than by the holder's own release.
public enum LockLostReason: UInt8, Sendable, Equatable {
    case sessionExpired = 1
    case leaseExpired = 2
    case nodeDeleted = 3
    case backendSessionLost = 4
}

public enum Event: Sendable, Equatable {
    case watch(type: WatchEventType, path: String)
    case lockLost(node: String, token: UInt64, reason: LockLostReason)
    /// The sidecar lost its backend connection: the hold is in doubt until it returns or is lost.
    case lockSuspended(node: String, token: UInt64)
    case sessionExpired(sessionID: UInt64)
    /// Session `requester` asks this revocable hold to be given up (PROTOCOL.md §12.11).
    case revocationRequested(node: String, token: UInt64, requester: UInt64)
    /// The sidecar reconnected within its backend session: a hold told `lockSuspended` is good again
    /// (only to sessions opened with `resumedEvents`, PROTOCOL.md §12.8).
    case lockResumed(node: String, token: UInt64)
}

/// One frame from the server.
public enum ServerMessage: Sendable, Equatable {
    case reply(Reply)
    case event(Event)
}
