import BatonEngine
@testable import BatonServer
import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// The order a loop turn writes its connections in (FlushQueue.swift): answers to requests that
/// waited (grants) first, then the rest; each connection's own bytes in the order they were made.
final class FlushOrderTests: DaemonTestCase {
    private var handles: [UnsafeMutableRawPointer] = []

    override func tearDown() {
        for handle in handles { handle.deallocate() }
        handles = []
        super.tearDown()
    }

    /// A connection that is never opened: only its identity and flush rank are used.
    private func connection(_ id: ConnectionID) -> Connection {
        let handle = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8)
        handles.append(handle)
        return Connection(id: id, transport: .unix, handle: handle)
    }

    private func drain(_ queue: inout FlushQueue) -> [ConnectionID] {
        var batch: [Connection] = []
        queue.take(into: &batch)
        var order: [ConnectionID] = []
        while let connection = batch.popLast() {
            connection.flushRank = .none  // as `flushTurn` does when it writes one
            order.append(connection.id)
        }
        return order
    }

    /// The releaser got its reply first, the grantee its grant after: the grantee is written first
    /// (the old order, first come first written, wrote the releaser first).
    func testAGrantIsWrittenBeforeAReleaseReplyQueuedEarlier() {
        var queue = FlushQueue()
        let releaser = connection(1), grantee = connection(2), reader = connection(3)
        queue.add(releaser, answer: false)
        queue.add(grantee, answer: true)
        queue.add(reader, answer: false)
        XCTAssertEqual(drain(&queue), [2, 1, 3])
        XCTAssertTrue(queue.isEmpty)
    }

    /// A connection queued with an ordinary reply that then gets a grant moves up, and is written
    /// once; the others keep the order they got output in.
    func testAConnectionMovesUpOnceAndIsWrittenOnce() {
        var queue = FlushQueue()
        let first = connection(1), second = connection(2), third = connection(3), fourth = connection(4)
        queue.add(first, answer: false)
        queue.add(second, answer: false)
        queue.add(third, answer: true)
        queue.add(second, answer: true)
        queue.add(second, answer: false)
        queue.add(fourth, answer: false)
        queue.add(third, answer: false)
        XCTAssertEqual(drain(&queue), [3, 2, 1, 4])
        // The next batch starts afresh: ranks were cleared as each was written.
        queue.add(second, answer: false)
        queue.add(first, answer: true)
        XCTAssertEqual(drain(&queue), [1, 2])
    }

    /// End to end: when the holder reads its `release` reply, the waiter's grant is already in the
    /// waiter's socket (written first, in the same turn). Repeated, each taking the other's role.
    func testTheGranteeIsWrittenBeforeTheReleaser() throws {
        let daemon = kept(try TestDaemon())
        var holder = try daemon.connect()
        try holder.handshake()
        var waiter = try daemon.connect()
        try waiter.handshake()
        guard case .granted(var node, var token) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/order"))) else {
            return XCTFail("not granted")
        }
        for round in 0..<20 {
            let waitingID = try waiter.send(.acquire(LockRequest(path: "/locks/order")))
            XCTAssertEqual(try waiter.callSuccessfully(.ping), .empty)  // the acquire waits: it was handled
            XCTAssertEqual(try holder.callSuccessfully(.release(node: node, token: token)), .empty)
            XCTAssertTrue(waiter.isReadable(), "round \(round): the grant was written after the release reply")
            let grant = try waiter.receiveReply()
            XCTAssertEqual(grant.requestID, waitingID)
            guard case .success(.granted(let nextNode, let nextToken)) = grant.result else { return XCTFail("\(grant)") }
            (node, token) = (nextNode, nextToken)
            swap(&holder, &waiter)
        }
    }
}
