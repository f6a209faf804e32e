import BatonProtocol

/// One libFuzzer input as frame bodies, in both directions. A crash or a failed precondition is a
/// finding; a decode error is the expected answer to most inputs.
public enum FrameFuzzer {
    public static func run(_ bytes: [UInt8]) {
        // As a client frame body (what batond decodes from every client, in place): the array and the
        // in-place decodes agree, and whatever decodes re-encodes to a frame that decodes to the same request.
        let inPlace = bytes.withUnsafeBytes { raw in
            Result { () throws(DecodeFailure) in try Codec.decodeRequest(inPlace: raw) }
        }
        switch (Result { () throws(DecodeFailure) in try Codec.decodeRequest(bytes) }, inPlace) {
        case (.success(let a), .success(let b)):
            precondition(a.requestID == b.requestID && a.request == b.request, "in-place decode differs: \(a) vs \(b)")
        case (.failure(let a), .failure(let b)):
            precondition(a == b, "in-place decode fails differently: \(a) vs \(b)")
        default:
            preconditionFailure("array and in-place decodes disagree on success: \(inPlace)")
        }
        if let (requestID, request) = try? Codec.decodeRequest(bytes) {
            let encoded = Codec.encodeRequest(request, requestID: requestID)
            guard let (idAgain, requestAgain) = try? Codec.decodeRequest(body(of: encoded)) else {
                preconditionFailure("a decoded request did not decode after re-encoding: \(request)")
            }
            precondition(idAgain == requestID && requestAgain == request,
                         "request changed across a round trip: \(request) -> \(requestAgain)")
        }
        // As a server frame body (what every client decodes). The encoder normalizes (it shortens
        // over-long error messages), so the property is: encoding is stable after one round trip.
        if let message = try? Codec.decodeServerMessage(bytes) {
            let encoded = Codec.encode(message)
            guard let again = try? Codec.decodeServerMessage(body(of: encoded)) else {
                preconditionFailure("a decoded server message did not decode after re-encoding: \(message)")
            }
            precondition(Codec.encode(again) == encoded, "server message encoding unstable: \(message)")
        }
        // As a byte stream cut into frames: the accumulator never reads out of bounds or loops.
        var accumulator = FrameAccumulator(frameBytesMax: 4_096)
        accumulator.append(bytes)
        var frames = 0
        while let frame = try? accumulator.nextBody() {
            precondition(!frame.isEmpty && frame.count <= 4_096, "accumulator returned a frame out of bounds")
            frames += 1
            precondition(frames <= bytes.count / 5 + 1, "more frames than the bytes can hold")
        }
    }

    /// A whole encoded frame without its 4-byte length prefix.
    static func body(of frame: [UInt8]) -> [UInt8] { Array(frame.dropFirst(FrameSplitter.prefixBytes)) }
}
