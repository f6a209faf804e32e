import BatonProtocol
import XCTest
import BatonTestSupport

/// After SwiftNIO's ByteToMessageDecoderVerifier: the same stream fed all at once, byte by byte, and
/// split in two at every offset yields the same frames.
final class FrameAccumulatorTests: XCTestCase {
    /// A stream of all golden request frames plus a few large ones.
    func streamFrames() throws -> [[UInt8]] {
        var frames = try VectorFile.load("requests.hex").map(\.bytes)
        frames.append(Codec.encodeRequest(.set(path: "/big", data: Array(repeating: 0x5a, count: 70_000),
                                               expectedVersion: 1), requestID: 99))
        frames.append(Codec.encodeRequest(.ping, requestID: 100))
        return frames
    }

    private func drain(_ accumulator: inout FrameAccumulator, into bodies: inout [[UInt8]]) throws {
        while let body = try accumulator.nextBody() { bodies.append(body) }
    }

    private func expectedBodies(_ frames: [[UInt8]]) -> [[UInt8]] { frames.map { Array($0[4...]) } }

    func testAllAtOnce() throws {
        let frames = try streamFrames()
        var accumulator = FrameAccumulator()
        accumulator.append(frames.joined())
        var bodies: [[UInt8]] = []
        try drain(&accumulator, into: &bodies)
        XCTAssertEqual(bodies, expectedBodies(frames))
    }

    func testByteByByte() throws {
        let frames = try streamFrames()
        var accumulator = FrameAccumulator()
        var bodies: [[UInt8]] = []
        for byte in frames.joined() {
            accumulator.append(CollectionOfOne(byte))
            try drain(&accumulator, into: &bodies)
        }
        XCTAssertEqual(bodies, expectedBodies(frames))
    }

    func testSplitAtEveryOffset() throws {
        // The small frames only, so that every split point is cheap; the large one is covered above.
        let frames = try VectorFile.load("requests.hex").map(\.bytes)
        let stream = Array(frames.joined())
        let expected = expectedBodies(frames)
        for offset in 0...stream.count {
            var accumulator = FrameAccumulator()
            var bodies: [[UInt8]] = []
            accumulator.append(stream[..<offset])
            try drain(&accumulator, into: &bodies)
            accumulator.append(stream[offset...])
            try drain(&accumulator, into: &bodies)
            XCTAssertEqual(bodies, expected, "split at \(offset)")
        }
    }

    func testRandomChunksAndDecodedValues() throws {
        let frames = try streamFrames()
        let stream = Array(frames.joined())
        var random = SeededGenerator(seed: 0xBA70)
        for _ in 0..<50 {
            var accumulator = FrameAccumulator()
            var bodies: [[UInt8]] = []
            var index = 0
            while index < stream.count {
                let size = Int.random(in: 1...4_096, using: &random)
                let end = min(stream.count, index + size)
                accumulator.append(stream[index..<end])
                try drain(&accumulator, into: &bodies)
                index = end
            }
            XCTAssertEqual(bodies, expectedBodies(frames))
            // The bodies decode to the same requests as the frames one by one.
            for (body, frame) in zip(bodies, frames) {
                XCTAssertEqual(try Codec.decodeRequest(body).request, try Codec.decodeRequest(Array(frame[4...])).request)
            }
        }
    }

    func testServerStreamByteByByte() throws {
        let frames = try VectorFile.load("replies.hex").map(\.bytes) + VectorFile.load("events.hex").map(\.bytes)
        var accumulator = FrameAccumulator()
        var messages: [ServerMessage] = []
        for byte in frames.joined() {
            accumulator.append(CollectionOfOne(byte))
            while let body = try accumulator.nextBody() { messages.append(try Codec.decodeServerMessage(body)) }
        }
        XCTAssertEqual(messages, try frames.map { try Codec.decodeServerMessage(Array($0[4...])) })
        XCTAssertEqual(messages.count, frames.count)
    }

    func testFrameOverTheLimitFailsBeforeItsBodyArrives() {
        var accumulator = FrameAccumulator(frameBytesMax: 100)
        accumulator.append([0, 0, 0, 101])
        XCTAssertThrowsError(try accumulator.nextBody()) { error in
            XCTAssertEqual((error as! DecodeFailure).code, .frameTooLarge)
            XCTAssertTrue((error as! DecodeFailure).code.closesConnection)
        }
        var exact = FrameAccumulator(frameBytesMax: 100)
        exact.append([0, 0, 0, 100])
        XCTAssertNil(try exact.nextBody(), "a frame at the limit waits for its body")
        exact.append(Array(repeating: 7, count: 100))
        XCTAssertEqual(try exact.nextBody(), Array(repeating: 7, count: 100))

        var huge = FrameAccumulator()
        huge.append([0xff, 0xff, 0xff, 0xff])
        XCTAssertThrowsError(try huge.nextBody()) { XCTAssertEqual(($0 as! DecodeFailure).code, .frameTooLarge) }
        XCTAssertTrue(huge.buffer.count <= 4, "nothing allocated for the announced body")
    }

    func testZeroLengthFrameIsMalformed() {
        var accumulator = FrameAccumulator()
        accumulator.append(Codec.encodeRequest(.ping, requestID: 1) + [0, 0, 0, 0])
        XCTAssertNotNil(try accumulator.nextBody())
        XCTAssertThrowsError(try accumulator.nextBody()) { error in
            XCTAssertEqual((error as! DecodeFailure).code, .malformedFrame)
        }
    }

    func testFrameSplitterAgreesWithTheAccumulator() throws {
        let frames = try streamFrames()
        let stream = Array(frames.joined())
        var offset = 0
        var bodies: [[UInt8]] = []
        try stream.withUnsafeBytes { buffer in
            while let length = try FrameSplitter.bodyLength(buffer, at: offset,
                                                            frameBytesMax: Limits.default.frameBytesMax) {
                let start = offset + FrameSplitter.prefixBytes
                guard start + length <= buffer.count else { break }
                bodies.append(Array(buffer[start..<(start + length)]))
                offset = start + length
            }
        }
        XCTAssertEqual(offset, stream.count)
        XCTAssertEqual(bodies, expectedBodies(frames))

        XCTAssertNil(try [UInt8]([0, 0, 1]).withUnsafeBytes {
            try FrameSplitter.bodyLength($0, at: 0, frameBytesMax: 10)
        })
        XCTAssertThrowsError(try [UInt8]([0, 0, 0, 11]).withUnsafeBytes {
            try FrameSplitter.bodyLength($0, at: 0, frameBytesMax: 10)
        }) { XCTAssertEqual(($0 as! DecodeFailure).code, .frameTooLarge) }
        XCTAssertThrowsError(try [UInt8]([9, 0, 0, 0, 0]).withUnsafeBytes {
            try FrameSplitter.bodyLength($0, at: 1, frameBytesMax: 10)
        }) { XCTAssertEqual(($0 as! DecodeFailure).code, .malformedFrame) }
    }
}

