import BatonProtocol
import XCTest

/// Bad input gets a named error, never a crash and never a wrong value.
final class MalformedInputTests: XCTestCase {
    private func requestFailure(_ body: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> DecodeFailure? {
        do {
            let decoded = try decodeRequestBothWays(body)
            XCTFail("decoded \(decoded) from \(hex(body))", file: file, line: line)
            return nil
        } catch {
            return error
        }
    }

    private func serverFailure(_ body: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> DecodeFailure? {
        do {
            let decoded = try Codec.decodeServerMessage(body)
            XCTFail("decoded \(decoded) from \(hex(body))", file: file, line: line)
            return nil
        } catch {
            return error
        }
    }

    private func body(_ request: Request, requestID: UInt32 = 0x0102_0304) -> [UInt8] {
        Array(Codec.encodeRequest(request, requestID: requestID)[4...])
    }

    func testTruncatedRequestsFailAtEveryLength() throws {
        let requests = try VectorFile.load("requests.hex").compactMap { VectorFile.body(of: $0) }
            + RoundTripTests.requests.filter { Codec.encodeRequest($0, requestID: 1).count < 5_000 }.map { body($0) }
        for full in requests {
            let requestID = full[1..<5].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            for length in 0..<full.count {
                guard let failure = requestFailure(Array(full[..<length])) else { continue }
                XCTAssertEqual(failure.code, .malformedFrame, "\(hex(full)) cut to \(length)")
                XCTAssertEqual(failure.requestID, length >= 5 ? requestID : nil, "\(hex(full)) cut to \(length)")
            }
        }
    }

    func testTruncatedServerFramesFailAtEveryLength() throws {
        let frames = try VectorFile.load("replies.hex") + VectorFile.load("events.hex")
        for entry in frames {
            guard let full = VectorFile.body(of: entry) else { continue }
            for length in 0..<full.count {
                guard let failure = serverFailure(Array(full[..<length])) else { continue }
                XCTAssertEqual(failure.code, .malformedFrame, "\(entry.name) cut to \(length)")
            }
        }
    }

    func testTrailingBytesAreRefused() throws {
        for entry in try VectorFile.load("requests.hex") {
            guard let full = VectorFile.body(of: entry) else { continue }
            for extra in [[0x00], [0xff, 0x01]] as [[UInt8]] {
                let failure = requestFailure(full + extra)
                XCTAssertEqual(failure?.code, .malformedFrame, entry.name)
                XCTAssertNotNil(failure?.requestID, entry.name)
            }
        }
        for entry in try VectorFile.load("replies.hex") + VectorFile.load("events.hex") {
            guard let full = VectorFile.body(of: entry) else { continue }
            XCTAssertEqual(serverFailure(full + [0])?.code, .malformedFrame, entry.name)
        }
    }

    func testUnknownOpcodesCarryTheRequestID() {
        let known = Set(Opcode.allCases.map(\.rawValue))
        for byte in UInt8.min...UInt8.max where !known.contains(byte) {
            let failure = requestFailure([byte, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
            XCTAssertEqual(failure?.code, .unknownOpcode)
            XCTAssertEqual(failure?.requestID, 0xdead_beef)
            XCTAssertEqual(failure?.opcode, byte)
            XCTAssertEqual(failure?.code.closesConnection, true)
        }
    }

    func testUnknownLockKinds() {
        var frame = body(.acquire(LockRequest(path: "/l", kind: .semaphore, permits: 2)))
        let kindIndex = 1 + 4 + 2 + 2  // opcode, request id, path length, "/l"
        XCTAssertEqual(frame[kindIndex], LockKind.semaphore.rawValue)
        for byte in UInt8(3)...UInt8.max {
            frame[kindIndex] = byte
            let failure = requestFailure(frame)
            XCTAssertEqual(failure?.code, .malformedFrame)
            XCTAssertEqual(failure?.requestID, 0x0102_0304)
        }
    }

    func testCreateFlagsAreCheckedBitByBit() throws {
        for flags in UInt8.min...UInt8.max {
            let valid = flags & ~0x07 == 0 && flags & 0x05 != 0x05
            XCTAssertEqual(CreateMode(flags: flags) != nil, valid, "flags \(flags)")
            var frame = body(.create(path: "/c", data: [], mode: .persistent))
            frame[frame.count - 1] = flags
            var multi = body(.multi([.create(path: "/c", data: [], mode: .persistent)]))
            multi[multi.count - 1] = flags
            if valid {
                let mode = try XCTUnwrap(CreateMode(flags: flags))
                XCTAssertEqual(mode.flags, flags, "flags survive a round trip")
                XCTAssertEqual(try decodeRequestBothWays(frame).request, .create(path: "/c", data: [], mode: mode))
                XCTAssertEqual(try decodeRequestBothWays(multi).request, .multi([.create(path: "/c", data: [], mode: mode)]))
            } else {
                XCTAssertEqual(requestFailure(frame)?.code, .malformedFrame, "flags \(flags)")
                XCTAssertEqual(requestFailure(multi)?.code, .malformedFrame, "flags \(flags)")
            }
        }
    }

    func testSessionFlagsRejectReservedBits() throws {
        var frame = body(.openSession(timeoutMilliseconds: 1_000, flags: []))
        for flags in UInt8.min...UInt8.max {
            frame[frame.count - 1] = flags
            if flags & ~SessionFlags.all.rawValue == 0 {
                XCTAssertEqual(try decodeRequestBothWays(frame).request,
                               .openSession(timeoutMilliseconds: 1_000, flags: SessionFlags(rawValue: flags)))
            } else {
                XCTAssertEqual(requestFailure(frame)?.code, .malformedFrame, "flags \(flags)")
            }
        }
    }

    func testBoolBytesOtherThanZeroOrOne() {
        // The watch flag: the last byte, or before a children request's cursor (u16 0) and limit (u32).
        for (request, fromEnd) in [(Request.exists(path: "/a", watch: false), 1), (.get(path: "/a", watch: false), 1),
                                   (.children(path: "/a", watch: false), 7)] {
            var frame = body(request)
            for byte in UInt8(2)...UInt8.max {
                frame[frame.count - fromEnd] = byte
                XCTAssertEqual(requestFailure(frame)?.code, .malformedFrame)
            }
        }
        var reply = Array(Codec.encode(.reply(Reply(requestID: 1, opcode: .checkToken,
                                                    result: .success(.tokenStatus(current: false)))))[4...])
        reply[reply.count - 1] = 2
        XCTAssertEqual(serverFailure(reply)?.code, .malformedFrame)
    }

    /// Replaces the marker "QQ" in an encoded request with bytes that are not UTF-8.
    private func corrupting(_ request: Request) -> [UInt8] {
        var frame = body(request)
        let marker = Array("QQ".utf8)
        guard let index = (0..<(frame.count - 1)).first(where: { Array(frame[$0...($0 + 1)]) == marker }) else {
            XCTFail("no marker in \(request)")
            return frame
        }
        frame[index] = 0xc3
        frame[index + 1] = 0x28  // a lead byte followed by a non-continuation byte
        return frame
    }

    func testInvalidUTF8InAPathIsInvalidPathAndKeepsTheConnection() {
        let path = "/aQQ"
        let requests: [Request] = [
            .create(path: path, data: [1], mode: .persistent), .delete(path: path, expectedVersion: 1),
            .exists(path: path, watch: true), .get(path: path, watch: false),
            .set(path: path, data: [], expectedVersion: 1), .children(path: path, watch: false),
            .check(path: path, expectedVersion: 0), .acquire(LockRequest(path: path)), .release(node: path, token: 1),
            .checkToken(path: path, token: 1), .inspect(path: path),
            .multi([.check(path: "/ok", expectedVersion: 0), .set(path: path, data: [], expectedVersion: 0)]),
        ]
        for request in requests {
            let failure = requestFailure(corrupting(request))
            XCTAssertEqual(failure?.code, .invalidPath, "\(request.opcode)")
            XCTAssertEqual(failure?.requestID, 0x0102_0304)
            XCTAssertEqual(failure?.opcode, request.opcode.rawValue)
            XCTAssertEqual(failure?.code.closesConnection, false)
        }
    }

    /// §3.4: a frame with a bad path and a closing fault after it (truncated, trailing bytes, bad
    /// bool) is `malformedFrame`, which closes; the path error is reported only for an otherwise good frame.
    func testMalformedRestOfTheFrameWinsOverAnInvalidPath() {
        let requests: [Request] = [
            .exists(path: "/aQQ", watch: true), .create(path: "/aQQ", data: [1, 2], mode: .persistent),
            .acquire(LockRequest(path: "/aQQ")), .checkToken(path: "/aQQ", token: 1),
            .multi([.set(path: "/aQQ", data: [], expectedVersion: 0), .check(path: "/ok", expectedVersion: 0)]),
        ]
        for request in requests {
            let bad = corrupting(request)
            for (name, frame) in [("truncated", Array(bad.dropLast())), ("trailing", bad + [0])] {
                let failure = requestFailure(frame)
                XCTAssertEqual(failure?.code, .malformedFrame, "\(request.opcode) \(name)")
                XCTAssertEqual(failure?.code.closesConnection, true, "\(request.opcode) \(name)")
                XCTAssertEqual(failure?.requestID, 0x0102_0304, "\(request.opcode) \(name)")
            }
        }
        // A watch flag of 2 after a bad path: the bool error wins.
        var exists = corrupting(.exists(path: "/aQQ", watch: true))
        exists[exists.count - 1] = 2
        XCTAssertEqual(requestFailure(exists)?.code, .malformedFrame)
    }

    /// Strings are read through an ASCII fast path: every byte from 0x80 up (alone, or after an
    /// ASCII run) must still be validated, and valid multi-byte text must decode exactly.
    func testNonASCIIStringsAreValidatedAndDecodedExactly() throws {
        for path in ["/é", "/a/日本語/b", "/\u{1F600}", "/" + String(repeating: "x", count: 40) + "ü"] {
            let (_, decoded) = try decodeRequestBothWays(body(.get(path: path, watch: false)))
            XCTAssertEqual(decoded, .get(path: path, watch: false))
        }
        for bad: [UInt8] in [[0x80], [0xff], [0x61, 0x62, 0x63, 0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf]] {
            var frame = corrupting(.get(path: "/aQQ", watch: false))
            let index = frame.firstIndex(of: 0xc3)!
            frame.replaceSubrange(index...(index + 1), with: bad)
            frame[index - 3] = UInt8(2 + bad.count)  // the path's u16 length: "/a" and the bad bytes
            XCTAssertEqual(requestFailure(frame)?.code, .invalidPath, "\(bad)")
        }
    }

    func testInvalidUTF8ElsewhereIsMalformed() {
        let failure = requestFailure(corrupting(.hello(version: 1, clientName: "cQQ")))
        XCTAssertEqual(failure?.code, .malformedFrame)
        XCTAssertEqual(failure?.code.closesConnection, true)

        var reply = Array(Codec.encode(.reply(Reply(requestID: 1, opcode: .children,
                                                    result: .success(.children(stat: Stat(), names: ["QQ"])))))[4...])
        reply[reply.count - 2] = 0xff
        XCTAssertEqual(serverFailure(reply)?.code, .malformedFrame)
    }

    func testBadHelloMagic() {
        var frame = body(.hello(version: 1, clientName: "x"))
        for index in 5..<9 {
            let saved = frame[index]
            frame[index] ^= 0x20
            let failure = requestFailure(frame)
            XCTAssertEqual(failure?.code, .malformedFrame)
            XCTAssertEqual(failure?.requestID, 0x0102_0304)
            frame[index] = saved
        }
        XCTAssertEqual(try decodeRequestBothWays(frame).request, .hello(version: 1, clientName: "x"))
    }

    func testMultiRefusesEveryOtherOpcode() {
        let allowed: Set<UInt8> = [Opcode.create.rawValue, Opcode.delete.rawValue, Opcode.set.rawValue,
                                   Opcode.check.rawValue]
        for byte in UInt8.min...UInt8.max where !allowed.contains(byte) {
            // One check operation, then the operation byte swapped: whatever follows cannot matter.
            var frame = body(.multi([.check(path: "/a", expectedVersion: 1)]))
            frame[1 + 4 + 2] = byte
            let failure = requestFailure(frame)
            XCTAssertEqual(failure?.code, .malformedFrame, "opcode \(byte)")
            XCTAssertEqual(failure?.requestID, 0x0102_0304)
        }
    }

    func testCountsLargerThanTheFrameFailWithoutAllocating() {
        // Multi claiming 65 535 operations with none present.
        XCTAssertEqual(requestFailure([Opcode.multi.rawValue, 0, 0, 0, 1, 0xff, 0xff])?.code, .malformedFrame)
        // Children claiming 4 billion names; inspect claiming 4 billion entries.
        var children = WireWriter()
        children.u8(1); children.u32(1); children.u8(Opcode.children.rawValue); children.u16(0)
        Codec.encodeStat(Stat(), into: &children)
        children.u32(.max)
        XCTAssertEqual(serverFailure(children.bytes)?.code, .malformedFrame)
        var inspect = WireWriter()
        inspect.u8(1); inspect.u32(1); inspect.u8(Opcode.inspect.rawValue); inspect.u16(0); inspect.u32(.max)
        XCTAssertEqual(serverFailure(inspect.bytes)?.code, .malformedFrame)
        // A multi reply claiming 65 535 results.
        XCTAssertEqual(serverFailure([1, 0, 0, 0, 1, Opcode.multi.rawValue, 0, 0, 0xff, 0xff])?.code, .malformedFrame)
    }

    func testUnknownValuesInServerFrames() {
        // Frame kind.
        for kind in [0, 3, 0xff] as [UInt8] { XCTAssertEqual(serverFailure([kind, 0, 0, 0, 1])?.code, .malformedFrame) }
        // Event kind.
        for kind in [0, 5, 0xff] as [UInt8] { XCTAssertEqual(serverFailure([2, kind, 0, 0])?.code, .malformedFrame) }
        // Watch type, lock-lost reason.
        XCTAssertEqual(serverFailure([2, 1, 0, 0, 1, 0x2f])?.code, .malformedFrame)
        XCTAssertEqual(serverFailure([2, 1, 5, 0, 1, 0x2f])?.code, .malformedFrame)
        XCTAssertEqual(serverFailure([2, 2, 0, 0] + Array(repeating: 0, count: 8) + [5])?.code, .malformedFrame)
        XCTAssertEqual(serverFailure([2, 2, 0, 0] + Array(repeating: 0, count: 8) + [0])?.code, .malformedFrame)
        // Reply opcode and error code.
        let unknownOpcode = serverFailure([1, 0, 0, 0, 7, 0x7f, 0, 0])
        XCTAssertEqual(unknownOpcode?.code, .unknownOpcode)
        XCTAssertEqual(unknownOpcode?.requestID, 7)
        XCTAssertEqual(serverFailure([1, 0, 0, 0, 7, 0x05, 0x00, 0x3f, 0, 0])?.code, .malformedFrame, "code 63 unused")
        XCTAssertEqual(serverFailure([1, 0, 0, 0, 7, 0x05, 0xff, 0xff, 0, 0])?.code, .malformedFrame)
        // Node kind in a stat, lock kind and position in an entry.
        var stat = Array(Codec.encode(.reply(Reply(requestID: 1, opcode: .set, result: .success(.stat(Stat())))))[4...])
        stat[stat.count - 1] = 3
        XCTAssertEqual(serverFailure(stat)?.code, .malformedFrame)
        let entry = LockEntry(node: "/n", kind: .exclusive, position: .holder, sessionID: 1, clientName: "c", token: 1,
                              ageMilliseconds: 1)
        let entries = Array(Codec.encode(.reply(Reply(requestID: 1, opcode: .inspect,
                                                      result: .success(.lockEntries([entry])))))[4...])
        let kindIndex = 8 + 4 + 2 + 2
        for (index, value) in [(kindIndex, UInt8(3)), (kindIndex + 1, UInt8(2))] {
            var corrupt = entries
            corrupt[index] = value
            XCTAssertEqual(serverFailure(corrupt)?.code, .malformedFrame)
        }
        // A multi result with an opcode that has no result.
        XCTAssertEqual(serverFailure([1, 0, 0, 0, 1, Opcode.multi.rawValue, 0, 0, 0, 1, Opcode.get.rawValue])?.code,
                       .malformedFrame)
    }

    func testEmptyBodies() {
        XCTAssertEqual(requestFailure([])?.code, .malformedFrame)
        XCTAssertNil(requestFailure([])?.requestID)
        XCTAssertEqual(serverFailure([])?.code, .malformedFrame)
    }
}
