import BatonProtocol
import BatonTestSupport
import XCTest

/// A connection's `StringMemo`: a request decoded with it is the request decoded without it, whatever
/// strings came before (one byte off, one byte longer, short, not ASCII, not UTF-8); and a long path
/// named again, or the node of the last grant, is decoded to the kept string itself (no new one).
final class StringMemoTests: XCTestCase {
    private func decode(_ request: Request, _ strings: StringMemo?) throws(DecodeFailure) -> Request {
        let frame = Codec.encodeRequest(request, requestID: 7)
        return try decode(body: Array(frame[FrameSplitter.prefixBytes...]), strings)
    }

    private func decode(body: [UInt8], _ strings: StringMemo?) throws(DecodeFailure) -> Request {
        // Followed by bytes that would change the answer if read.
        let padded = body + [UInt8](repeating: 0x41, count: 40)
        let result = padded.withUnsafeBytes { raw in
            Result { () throws(DecodeFailure) in
                let bytes = UnsafeRawBufferPointer(rebasing: raw[..<body.count])
                return try Codec.decodeRequest(inPlace: bytes, strings: strings)
            }
        }
        return try result.get().request
    }

    private func storage(_ string: String) -> UnsafePointer<UInt8>? {
        string.utf8.withContiguousStorageIfAvailable { $0.baseAddress } ?? nil
    }

    func testDecodingWithTheStringsIsDecodingWithout() throws {
        var generator = SeededGenerator(seed: 17)
        let base = "/locks/orders-0000000001"
        var pool = [base, base + "x", "/locks/orders-0000000002", "/locks/orders-000000000", "/short", "/locks/é-commandes-01",
                    "/locks/é-commandes-02", "/locks/orders-0000000001/x-00000000000000a1-0000000007"]
        pool.append(String(pool[0].dropLast()) + "2")
        let strings = StringMemo()
        for step in 0..<3_000 {
            let path = pool.randomElement(using: &generator)!
            let request: Request
            switch Int.random(in: 0..<5, using: &generator) {
            case 0: request = .acquire(LockRequest(path: path, owner: Bool.random(using: &generator) ? "" : path))
            case 1: request = .release(node: path, token: 3)
            case 2: request = .get(path: path, watch: false)
            case 3: request = .create(path: path, data: [1], mode: CreateMode(kind: .ephemeral))
            default:
                strings.remember(.reply(Reply(requestID: 1, opcode: .acquire, result: .success(.granted(node: path, token: 2)))))
                continue
            }
            XCTAssertEqual(try decode(request, strings), try decode(request, nil), "\(step)")
        }
        // A path that is not UTF-8, as long as a kept one: refused as without the strings, and not kept.
        var body = Array(Codec.encodeRequest(.get(path: base, watch: false), requestID: 7)[FrameSplitter.prefixBytes...])
        body[body.count - 2] = 0xFF
        XCTAssertThrowsError(try decode(body: body, strings)) { error in XCTAssertEqual((error as? DecodeFailure)?.code, .invalidPath) }
        XCTAssertEqual(try decode(.get(path: base, watch: false), strings), .get(path: base, watch: false))
    }

    func testAPathNamedAgainAndAGrantedNodeAreTheKeptStrings() throws {
        let strings = StringMemo()
        let lock = "/locks/orders-0000000001"
        guard case .acquire(let first) = try decode(.acquire(LockRequest(path: lock)), strings),
              case .acquire(let again) = try decode(.acquire(LockRequest(path: lock)), strings) else { return XCTFail() }
        XCTAssertEqual(again.path, lock)
        XCTAssertNotNil(storage(first.path))
        XCTAssertEqual(storage(again.path), storage(first.path), "the kept string, not a new one")

        let node = lock + "/x-00000000000000a1-0000000007"
        strings.remember(.reply(Reply(requestID: 1, opcode: .acquire, result: .success(.granted(node: node, token: 9)))))
        guard case .release(let released, 9) = try decode(.release(node: String(decoding: Array(node.utf8), as: UTF8.self), token: 9), strings) else { return XCTFail() }
        XCTAssertEqual(released, node)
        XCTAssertEqual(storage(released), storage(node), "the granted node's string")
        guard case .acquire(let third) = try decode(.acquire(LockRequest(path: lock)), strings) else { return XCTFail() }
        XCTAssertEqual(storage(third.path), storage(first.path), "the release found the node: the lock is still kept")

        // Without the strings, or for another connection's, a new string each time.
        guard case .acquire(let other) = try decode(.acquire(LockRequest(path: lock)), StringMemo()) else { return XCTFail() }
        XCTAssertNotEqual(storage(other.path), storage(first.path))
    }
}
