import BatonProtocol
import XCTest
import BatonTestSupport

/// Seeded random input: the decoders return a value or a named error, and never crash. A failure
/// replays from the seed in the message.
final class RobustnessTests: XCTestCase {
    static let seed: UInt64 = 0x00BA_7011

    func testRandomBytesNeverCrashTheDecoders() {
        var random = SeededGenerator(seed: Self.seed)
        for _ in 0..<4_000 {
            let count = Int.random(in: 0...96, using: &random)
            let bytes = (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &random) }
            checkRequest(bytes)
            checkServerMessage(bytes)
        }
    }

    /// Random bytes rarely pass the first field; mutated golden frames reach deep into every decoder.
    func testMutatedGoldenFramesNeverCrashTheDecoders() throws {
        var random = SeededGenerator(seed: Self.seed &+ 1)
        let requests = try VectorFile.load("requests.hex").compactMap { VectorFile.body(of: $0) }
        let servers = try (VectorFile.load("replies.hex") + VectorFile.load("events.hex")).compactMap { VectorFile.body(of: $0) }
        for round in 0..<4_000 {
            let useRequest = round % 2 == 0
            var bytes = useRequest ? requests[round / 2 % requests.count] : servers[round / 2 % servers.count]
            for _ in 0...Int.random(in: 0...3, using: &random) {
                switch Int.random(in: 0..<4, using: &random) {
                case 0 where !bytes.isEmpty:
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: .min ... .max, using: &random)
                case 1 where !bytes.isEmpty:
                    bytes.removeLast(Int.random(in: 1...bytes.count, using: &random))
                case 2:
                    bytes.append(UInt8.random(in: .min ... .max, using: &random))
                default:
                    if bytes.count > 1 { bytes.remove(at: Int.random(in: 0..<bytes.count, using: &random)) }
                }
            }
            if useRequest { checkRequest(bytes) } else { checkServerMessage(bytes) }
        }
    }

    /// Whatever decodes re-encodes to the same bytes: the encoding is canonical.
    private func checkRequest(_ bytes: [UInt8]) {
        do {
            let (requestID, request) = try decodeRequestBothWays(bytes)
            XCTAssertEqual(Array(Codec.encodeRequest(request, requestID: requestID)[4...]), bytes,
                           "seed \(Self.seed): \(hex(bytes))")
        } catch {
            XCTAssertNotEqual(error.code, .ok, "seed \(Self.seed): \(hex(bytes))")
        }
    }

    private func checkServerMessage(_ bytes: [UInt8]) {
        do {
            let message = try Codec.decodeServerMessage(bytes)
            XCTAssertEqual(Array(Codec.encode(message)[4...]), bytes, "seed \(Self.seed): \(hex(bytes))")
        } catch {
            XCTAssertNotEqual(error.code, .ok, "seed \(Self.seed): \(hex(bytes))")
        }
    }
}
