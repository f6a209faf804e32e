import BatonNamespace
import BatonProtocol
import XCTest

/// Per-session quotas (PROTOCOL.md §8.1): nodes and data bytes a session created that still exist.
final class QuotaTests: XCTestCase {
    let now = Time(milliseconds: 1_000)

    private func makeQuotaNamespace(nodes: Int = 100, dataBytes: Int = 1_048_576) -> Namespace {
        makeNamespace {
            $0.limits.nodesPerSessionMax = nodes
            $0.limits.dataBytesPerSessionMax = dataBytes
        }
    }

    func testAFailedMultiLeavesTheCountsAsTheyWere() throws {
        let namespace = makeQuotaNamespace(nodes: 2)
        let session = try namespace.openSession(timeoutMilliseconds: 10_000, now: now).id
        assertFails(.quotaExceeded) {
            try namespace.multi([.create(path: "/a", data: [], mode: .persistent),
                                 .create(path: "/b", data: [], mode: .persistent),
                                 .create(path: "/c", data: [], mode: .persistent)], session: session, now: now)
        }
        XCTAssertNil(try namespace.exists("/a"))
        // Had the rolled-back creates been counted, the second create would be refused.
        try namespace.create("/a", data: [], mode: .persistent, session: session, now: now)
        try namespace.create("/b", data: [], mode: .persistent, session: session, now: now)
        assertFails(.quotaExceeded) { try namespace.create("/c", data: [], mode: .persistent, session: session, now: now) }
        // A failed multi of deletes gives nothing back either.
        assertFails(.noNode) {
            try namespace.multi([.delete(path: "/a", expectedVersion: -1), .delete(path: "/none", expectedVersion: -1)],
                                session: session, now: now)
        }
        assertFails(.quotaExceeded) { try namespace.create("/c", data: [], mode: .persistent, session: session, now: now) }
    }

    func testSetsCountAgainstTheCreatorAndDeletesGiveBack() throws {
        let namespace = makeQuotaNamespace(dataBytes: 1_000)
        let owner = try namespace.openSession(timeoutMilliseconds: 10_000, now: now).id
        let other = try namespace.openSession(timeoutMilliseconds: 10_000, now: now).id
        try namespace.create("/a", data: [UInt8](repeating: 0, count: 600), mode: .persistent, session: owner, now: now)
        // Another session growing the owner's node is charged to the owner.
        assertFails(.quotaExceeded) { try namespace.set("/a", data: [UInt8](repeating: 0, count: 1_001), expectedVersion: -1, now: now) }
        try namespace.set("/a", data: [UInt8](repeating: 0, count: 1_000), expectedVersion: -1, now: now)
        assertFails(.quotaExceeded) { try namespace.create("/b", data: [1], mode: .persistent, session: owner, now: now) }
        try namespace.create("/b", data: [UInt8](repeating: 0, count: 1_000), mode: .persistent, session: other, now: now)
        try namespace.delete("/a", expectedVersion: -1, now: now)
        try namespace.create("/c", data: [UInt8](repeating: 0, count: 1_000), mode: .ephemeral, session: owner, now: now)
        // Its ephemerals go with it; a new session starts from nothing.
        namespace.closeSession(owner, now: now)
        let next = try namespace.openSession(timeoutMilliseconds: 10_000, now: now).id
        try namespace.create("/d", data: [UInt8](repeating: 0, count: 1_000), mode: .persistent, session: next, now: now)
    }
}
