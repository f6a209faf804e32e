import BatonNamespace
import BatonProtocol
import XCTest

/// SplitMix64: a seeded generator so tests are repeatable.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}

func makeConfiguration(_ adjust: (inout NamespaceConfiguration) -> Void = { _ in }) -> NamespaceConfiguration {
    var configuration = NamespaceConfiguration()
    configuration.containerGraceMilliseconds = 1_000
    adjust(&configuration)
    return configuration
}

func makeNamespace(seed: UInt64 = 1, at milliseconds: UInt64 = 1_000,
                   _ adjust: (inout NamespaceConfiguration) -> Void = { _ in }) -> Namespace {
    Namespace(configuration: makeConfiguration(adjust), now: Time(milliseconds: milliseconds),
              random: SeededRandom(seed: seed))
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Asserts that `body` throws a `ReplyError` with `code`.
func assertFails<T>(_ code: ErrorCode, file: StaticString = #filePath, line: UInt = #line,
                    _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("expected \(code), got success", file: file, line: line)
    } catch let error as ReplyError {
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
    } catch let failure as MultiFailure {
        XCTAssertEqual(failure.error.code, code, "\(failure)", file: file, line: line)
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
    }
}

/// The watch notifications in a batch of outputs.
func watchEvents(_ outputs: [NamespaceOutput]) -> [NamespaceOutput] {
    outputs.filter { if case .watch = $0 { return true } else { return false } }
}

func records(_ outputs: [NamespaceOutput]) -> [NamespaceRecord] {
    outputs.compactMap { output in
        if case .persist(let bytes) = output { return try? NamespaceRecord.decode(bytes) }
        return nil
    }
}

func persistedBytes(_ outputs: [NamespaceOutput]) -> [[UInt8]] {
    outputs.compactMap { output in
        if case .persist(let bytes) = output { return bytes }
        return nil
    }
}
