@testable import BatonNamespace
import BatonProtocol
import XCTest

/// Small data lives inside the node (`NodeData`): every length reads back as written, through the
/// namespace, a set that changes the size across the inline bound, and a snapshot.
final class NodeDataTests: XCTestCase {
    let now = Time(milliseconds: 1_000)
    let lengths = [0, 1, 7, 8, 9, 15, 16, 17, 64, 1_000]

    private func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }

    func testEveryLengthReadsBackAsWritten() {
        for count in lengths {
            let bytes = pattern(count, seed: 5)
            XCTAssertEqual(NodeData(bytes).bytes, bytes, "\(count) bytes")
            XCTAssertEqual(NodeData(bytes), NodeData(bytes))
            if count > 0 {
                var other = bytes
                other[count - 1] ^= 0xFF
                XCTAssertNotEqual(NodeData(bytes), NodeData(other), "\(count) bytes, last one differs")
            }
        }
        XCTAssertNotEqual(NodeData([0]), NodeData([]), "a zero byte is not no data")
        XCTAssertNotEqual(NodeData([0, 0]), NodeData([0]))
    }

    func testGetSetAndSnapshotAcrossTheInlineBound() throws {
        let namespace = makeNamespace()
        let session = try namespace.openSession(timeoutMilliseconds: 10_000, now: now).id
        for count in lengths {
            let path = "/n\(count)"
            try namespace.create(path, data: pattern(count, seed: 1), mode: .persistent, session: session, now: now)
            XCTAssertEqual(try namespace.get(path).data, pattern(count, seed: 1))
            XCTAssertEqual(try namespace.get(path).stat.dataLength, UInt32(count))
        }
        // Grow the small ones past the bound and shrink the large ones into it.
        for (count, next) in zip(lengths, lengths.reversed()) {
            let stat = try namespace.set("/n\(count)", data: pattern(next, seed: 2), expectedVersion: -1, now: now)
            XCTAssertEqual(stat.dataLength, UInt32(next))
            XCTAssertEqual(try namespace.get("/n\(count)").data, pattern(next, seed: 2))
        }
        let restored = try Namespace(configuration: makeConfiguration(), now: now,
                                     recoveringFrom: namespace.snapshot().serialize(), records: [[UInt8]]())
        for (count, next) in zip(lengths, lengths.reversed()) {
            XCTAssertEqual(try restored.get("/n\(count)").data, pattern(next, seed: 2), "/n\(count) after recovery")
        }
    }
}
