import BatonProtocol

/// Leader election as a client recipe over the lock (PROTOCOL.md §12.15), like Curator's LeaderLatch
/// and etcd's Campaign/Proclaim/Observe/Resign: no request of its own.
///
/// - campaign: an exclusive acquire of the election path; once granted, the leader proclaims its
///   value by setting the lock node's data to its election record (its fencing token, then the value).
/// - leader: the holder `inspect` lists, with the value of the record if the record's token is the
///   holder's (a record left by an earlier leader, or not written yet, gives no value).
/// - observe: a persistent watch on the election path (§11.1): waiters come and go
///   (`childrenChanged`) and records are written (`dataChanged`); each event re-reads the leader.
/// - resign: release.
public struct ElectionLeader: Sendable, Equatable, CustomStringConvertible {
    /// The leader's waiter node, session and client name, as `inspect` shows them.
    public var node: String
    public var sessionID: UInt64
    public var clientName: String
    /// The leader's fencing token.
    public var token: UInt64
    /// The value it proclaimed, or nil if it has not proclaimed one yet.
    public var value: [UInt8]?

    public var description: String {
        let shown = value.map { String(decoding: $0, as: UTF8.self) } ?? "(no value yet)"
        return "\(shown) session=0x\(String(sessionID, radix: 16)) token=\(token)"
    }
}

/// The lock node's data while someone leads: u64 fencing token (big-endian), then the value.
enum ElectionRecord {
    static func encode(token: UInt64, value: [UInt8]) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: token >> (56 - 8 * $0)) } + value
    }

    /// The value, if `data` is a record written with `token`.
    static func value(in data: [UInt8], token: UInt64) -> [UInt8]? {
        guard data.count >= 8 else { return nil }
        let written = data.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return written == token ? Array(data.dropFirst(8)) : nil
    }

    /// The leader from a lock's entries and the lock node's data (read separately: the token fences them).
    static func leader(entries: [LockEntry], data: [UInt8]?) -> ElectionLeader? {
        guard let holder = entries.first(where: { $0.position == .holder }) else { return nil }
        return ElectionLeader(node: holder.node, sessionID: holder.sessionID, clientName: holder.clientName,
                              token: holder.token, value: data.flatMap { value(in: $0, token: holder.token) })
    }
}

extension BatonClient {
    /// Waits (at most `timeout`; nil: forever) to lead the election at `path`, then proclaims `value`.
    /// Leadership lasts until `resign`, the session's end, or the lease (if any) runs out: act on
    /// `lockLost` as for any hold.
    public func campaign(_ path: String, value: [UInt8], timeout: Duration? = nil,
                         lease: Duration? = nil) async throws(BatonError) -> LockGrant {
        let grant = try await acquire(path, kind: .exclusive, timeout: timeout, lease: lease)
        do throws(BatonError) {
            try await proclaim(grant, value: value)
        } catch {
            try? await release(grant)
            throw error
        }
        return grant
    }

    /// Replaces the leader's value (etcd's Proclaim). A record is believed only while its token is
    /// the current holder's, so a late write by an ex-leader shows no value rather than a wrong one.
    public func proclaim(_ grant: LockGrant, value: [UInt8]) async throws(BatonError) {
        _ = try await set(grant.path, data: ElectionRecord.encode(token: grant.token, value: value))
    }

    /// Gives up leadership (or the candidacy, from another task while `campaign` waits: cancel it).
    public func resign(_ grant: LockGrant) async throws(BatonError) {
        try await release(grant)
    }

    /// The current leader of the election at `path`, or nil if nobody leads.
    public func leader(_ path: String) async throws(BatonError) -> ElectionLeader? {
        let entries: [LockEntry]
        do throws(BatonError) {
            entries = try await inspect(path)
        } catch where error.code == .noNode {
            return nil
        }
        guard entries.contains(where: { $0.position == .holder }) else { return nil }
        let data: [UInt8]?
        do throws(BatonError) {
            data = try await get(path).data
        } catch where error.code == .noNode {
            data = nil
        }
        return ElectionRecord.leader(entries: entries, data: data)
    }

    /// The leader now, then each change of it (another leader, a value proclaimed, nobody: nil), until
    /// the connection closes. Uses a persistent watch on `path` (kept until the session ends: `removeWatch`
    /// ends it), so it needs the embedded store (PROTOCOL.md §16).
    public func observeLeader(_ path: String) async throws(BatonError) -> AsyncStream<ElectionLeader?> {
        let changes = try await watchEvents(path, mode: .persistent)
        let first = try await leader(path)
        return AsyncStream { continuation in
            continuation.yield(first)
            let task = Task {
                var last = first
                for await _ in changes {
                    // Level-triggered: each event re-reads, so events that come together give one answer.
                    guard let current = try? await self.leader(path) else { break }
                    if current != last {
                        continuation.yield(current)
                        last = current
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

extension BlockingClient {
    /// See `BatonClient.campaign`.
    public func campaign(_ path: String, value: [UInt8], timeout: Duration? = nil,
                         lease: Duration? = nil) throws(BatonError) -> LockGrant {
        let grant = try acquire(path, kind: .exclusive, timeout: timeout, lease: lease)
        do throws(BatonError) {
            try proclaim(grant, value: value)
        } catch {
            try? release(grant)
            throw error
        }
        return grant
    }

    /// See `BatonClient.proclaim`.
    public func proclaim(_ grant: LockGrant, value: [UInt8]) throws(BatonError) {
        _ = try set(grant.path, data: ElectionRecord.encode(token: grant.token, value: value))
    }

    /// See `BatonClient.resign`.
    public func resign(_ grant: LockGrant) throws(BatonError) {
        try release(grant)
    }

    /// See `BatonClient.leader`.
    public func leader(_ path: String) throws(BatonError) -> ElectionLeader? {
        let entries: [LockEntry]
        do throws(BatonError) {
            entries = try inspect(path)
        } catch where error.code == .noNode {
            return nil
        }
        guard entries.contains(where: { $0.position == .holder }) else { return nil }
        let data: [UInt8]?
        do throws(BatonError) {
            data = try get(path).data
        } catch where error.code == .noNode {
            data = nil
        }
        return ElectionRecord.leader(entries: entries, data: data)
    }
}
