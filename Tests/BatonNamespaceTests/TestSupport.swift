import BatonNamespace
import BatonProtocol
import XCTest
import BatonTestSupport

func makeConfiguration(_ adjust: (inout NamespaceConfiguration) -> Void = { _ in }) -> NamespaceConfiguration {
    var configuration = NamespaceConfiguration()
    configuration.containerGraceMilliseconds = 1_000
    adjust(&configuration)
    return configuration
}

func makeNamespace(seed: UInt64 = 1, at milliseconds: UInt64 = 1_000,
                   _ adjust: (inout NamespaceConfiguration) -> Void = { _ in }) -> Namespace {
    Namespace(configuration: makeConfiguration(adjust), now: Time(milliseconds: milliseconds),
              random: SeededGenerator(seed: seed))
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
