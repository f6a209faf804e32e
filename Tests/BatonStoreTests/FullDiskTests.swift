import Foundation
import XCTest
@testable import BatonStore

/// A real full file system (a small tmpfs, so root only): a failed append or commit keeps the
/// records in memory, refuses commits, and a retry after space is freed makes them durable.
final class FullDiskTests: StoreTestCase {
    var mountPoint = ""

    override func setUpWithError() throws {
        try super.setUpWithError()
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root (CI runs as root)") }
        mountPoint = root + "/small"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try run("/bin/mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mountPoint])
        directory = mountPoint + "/data"
    }

    override func tearDownWithError() throws {
        if !mountPoint.isEmpty { try? run("/bin/umount", [mountPoint]) }
        try super.tearDownWithError()
    }

    func run(_ tool: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw XCTSkip("\(tool) \(arguments) failed") }
    }

    func testAFullDiskKeepsTheRecordsAndARetryAfterFreeingSpaceMakesThemDurable() throws {
        let (store, _) = try open(configuration(.batch, segmentBytesMax: 64 * 1024))
        // Fill the file system with a ballast file.
        let ballast = mountPoint + "/ballast"
        FileManager.default.createFile(atPath: ballast, contents: Data(count: 200 * 1024))
        var acknowledged: [[UInt8]] = []
        var unacknowledged: [[UInt8]] = []
        var index = 0
        while store.failure == nil && index < 10_000 {
            index += 1
            let record = [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 1_000)
            try store.append(record)
            do {
                try store.commit()
                acknowledged.append(record)
            } catch {
                unacknowledged.append(record)
            }
        }
        let failure = try XCTUnwrap(store.failure, "the tmpfs must fill up")
        XCTAssertTrue(failure.isOutOfSpace, "\(failure)")
        // Appends while failing are kept (a session's end may still produce records); commits refuse.
        try store.append([0xAB])
        unacknowledged.append([0xAB])
        XCTAssertThrowsError(try store.commit()) { error in
            guard case .unusable? = error as? StoreError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try store.retry(), "still full")
        XCTAssertNotNil(store.failure)

        try FileManager.default.removeItem(atPath: ballast)
        try store.retry()
        XCTAssertNil(store.failure)
        try store.append([0xCD])
        try store.commit()
        try store.close()

        let (reopened, recovery) = try open(configuration(.batch, segmentBytesMax: 64 * 1024))
        defer { try? reopened.close() }
        XCTAssertNil(recovery.truncation)
        XCTAssertEqual(recovery.records.map(\.payload), acknowledged + unacknowledged + [[0xCD]])
        XCTAssertEqual(recovery.records.map(\.lsn), (1...LogSequenceNumber(recovery.records.count)).map { $0 })
    }
}
