import Foundation
import Logging
import XCTest
@testable import BatonStore

/// Collects log messages so tests can check what recovery warned about.
final class CapturedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [(level: Logger.Level, message: String)] = []

    func append(_ level: Logger.Level, _ message: String) {
        lock.lock(); defer { lock.unlock() }
        storage.append((level, message))
    }

    var warnings: [String] {
        lock.lock(); defer { lock.unlock() }
        return storage.filter { $0.level == .warning }.map(\.message)
    }

    var logger: Logger {
        Logger(label: "baton.store.test") { _ in CapturingHandler(log: self) }
    }
}

struct CapturingHandler: LogHandler {
    let log: CapturedLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        log.append(event.level, "\(event.message)")
    }
}

/// A fresh temporary data directory per test, removed afterwards.
class StoreTestCase: XCTestCase {
    var root: String = ""
    var directory: String = ""
    let captured = CapturedLog()

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "baton-store-tests-" + UUID().uuidString
        directory = root + "/data"
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    func configuration(_ policy: FsyncPolicy = .batch, segmentBytesMax: Int = 64 * 1_048_576) -> StoreConfiguration {
        var configuration = StoreConfiguration(fsyncPolicy: policy)
        configuration.segmentBytesMax = segmentBytesMax
        return configuration
    }

    func open(_ configuration: StoreConfiguration? = nil) throws -> (store: Store, recovery: Recovery) {
        try Store.open(directory: directory, configuration: configuration ?? self.configuration(), logger: captured.logger)
    }

    /// Payload of record `index`: distinct contents and lengths, starting with a type byte like real ones.
    func payload(_ index: Int) -> [UInt8] {
        [UInt8(truncatingIfNeeded: index)] + Array(repeating: UInt8(truncatingIfNeeded: index &* 7), count: 10 + index % 23)
    }

    /// Appends payloads 1...count (LSN n carries payload(n)), commits, and closes; or, with
    /// `crash`, drops the store without closing, as kill -9 would (the log's end is then unknown).
    func writeLog(count: Int, configuration: StoreConfiguration? = nil, crash: Bool = false) throws {
        let (store, _) = try open(configuration)
        for index in 1...count {
            XCTAssertEqual(try store.append(payload(index)), LogSequenceNumber(index))
        }
        try store.commit()
        if !crash { try store.close() }
    }

    func openRepairing(_ configuration: StoreConfiguration? = nil) throws -> (store: Store, recovery: Recovery) {
        try Store.open(directory: directory, configuration: configuration ?? self.configuration(), repair: true,
                       logger: captured.logger)
    }

    /// Opening refuses with `corruptDataDirectory` naming `file` and `offset`, and changes no file.
    func assertRefused(file: String, offset: Int, _ configuration: StoreConfiguration? = nil,
                       sourceFile: StaticString = #filePath, line: UInt = #line) throws {
        let before = try fileNames().map { ($0, try read($0)) }.filter { $0.0 != "LOCK" }
        XCTAssertThrowsError(try open(configuration), file: sourceFile, line: line) { error in
            guard case .corruptDataDirectory(let named, let at, _)? = error as? StoreError else {
                return XCTFail("\(error)", file: sourceFile, line: line)
            }
            XCTAssertEqual(named, file, file: sourceFile, line: line)
            XCTAssertEqual(at, offset, file: sourceFile, line: line)
            XCTAssertTrue("\(error)".contains("--repair"), "\(error)", file: sourceFile, line: line)
        }
        let after = try fileNames().map { ($0, try read($0)) }.filter { $0.0 != "LOCK" }
        XCTAssertEqual(after.map(\.0), before.map(\.0), "refusing changes nothing", file: sourceFile, line: line)
        XCTAssertEqual(after.map(\.1), before.map(\.1), "refusing changes nothing", file: sourceFile, line: line)
    }

    func path(_ name: String) -> String { directory + "/" + name }

    func fileNames() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }

    func segmentNames() throws -> [String] {
        try fileNames().filter { $0.hasPrefix("wal-") && $0.hasSuffix(".log") }
    }

    func segmentName(_ firstLSN: LogSequenceNumber) -> String {
        "wal-" + String(format: "%020llu", firstLSN) + ".log"
    }

    func snapshotName(_ lsn: LogSequenceNumber) -> String {
        "snapshot-" + String(format: "%020llu", lsn) + ".snap"
    }

    func read(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path(name))))
    }

    func write(_ name: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path(name)))
    }

    func flipBit(_ name: String, at offset: Int, bit: UInt8 = 0x10) throws {
        var bytes = try read(name)
        bytes[offset] ^= bit
        try write(name, bytes)
    }

    func fileSize(_ name: String) throws -> Int { try read(name).count }

    /// Byte offsets of each record in a segment, from the documented layout: a 24-byte header, then
    /// records of a 16-byte header plus the payload.
    func recordOffsets(inSegmentStartingAt firstLSN: LogSequenceNumber, through lastLSN: LogSequenceNumber) -> [LogSequenceNumber: Int] {
        var offsets: [LogSequenceNumber: Int] = [:]
        var offset = 24
        for lsn in firstLSN...lastLSN {
            offsets[lsn] = offset
            offset += 16 + payload(Int(lsn)).count
        }
        return offsets
    }

    func assertRecords(_ recovery: Recovery, _ range: ClosedRange<Int>, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(recovery.records.map(\.lsn), range.map { LogSequenceNumber($0) }, file: file, line: line)
        XCTAssertEqual(recovery.records.map(\.payload), range.map { payload($0) }, file: file, line: line)
    }
}
