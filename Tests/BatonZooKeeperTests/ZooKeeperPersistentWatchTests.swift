import BatonProtocol
import BatonTestSupport
import XCTest

/// PROTOCOL.md §16: over the ZooKeeper store, persistent watches are refused by name; the election
/// recipe's other steps (§12.15: acquire, a record set on the lock node, inspect, release) work.
extension ZooKeeperStoreDaemonTests {
    func testPersistentWatchesAreRefusedByNameAndElectionStepsWork() throws {
        let daemon = try sidecar(chroot: "/pw")
        let candidate = try client(daemon, "candidate"), observer = try client(daemon, "observer")
        for request in [Request.addWatch(path: "/e", mode: .persistent), .addWatch(path: "/", mode: .recursive),
                        .removeWatches(path: "/e", mode: .persistent)] {
            guard case .failure(let error) = try observer.call(request).result else { return XCTFail("\(request) succeeded") }
            XCTAssertEqual(error.code, .unsupportedByStore)
        }
        guard case .granted(let node, let token) = try candidate.callSuccessfully(.acquire(LockRequest(path: "/e"))) else {
            return XCTFail("acquire")
        }
        let record = (0..<8).map { UInt8(truncatingIfNeeded: token >> (56 - 8 * $0)) } + Array("alpha".utf8)
        _ = try candidate.callSuccessfully(.set(path: "/e", data: record, expectedVersion: -1))
        guard case .lockEntries(let entries) = try observer.callSuccessfully(.inspect(path: "/e")),
              case .data(_, let data) = try observer.callSuccessfully(.get(path: "/e", watch: false)) else {
            return XCTFail("inspect and get")
        }
        XCTAssertEqual(entries.filter { $0.position == .holder }.map(\.token), [token])
        XCTAssertEqual(data, record)
        _ = try candidate.callSuccessfully(.release(node: node, token: token))
        guard case .lockEntries(let after) = try observer.callSuccessfully(.inspect(path: "/e")) else { return XCTFail("inspect") }
        XCTAssertTrue(after.isEmpty)
    }
}
