import Foundation
import XCTest
@testable import BatonStore

/// The data directory is private: other users can neither list it nor read a node's value from the
/// log or a snapshot (issue 8, item 7).
final class PermissionTests: StoreTestCase {
    func mode(_ path: String) throws -> Int {
        var status = stat()
        guard stat(path, &status) == 0 else { throw POSIXError(.ENOENT) }
        return Int(status.st_mode & 0o7777)
    }

    func assertPrivate(_ when: String, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try mode(directory), 0o700, "directory, \(when)", file: file, line: line)
        for name in try fileNames() {
            XCTAssertEqual(try mode(path(name)), 0o600, "\(name), \(when)", file: file, line: line)
        }
    }

    func testModesAfterStartSnapshotAndSegmentRoll() throws {
        let umask = Foundation.umask(0)   // the most permissive umask: the modes must not depend on it
        defer { Foundation.umask(umask) }
        let small = configuration(segmentBytesMax: 200)
        let (store, _) = try open(small)
        try assertPrivate("after start")
        for index in 1...20 { try store.append(payload(index)) }
        try store.commit()
        XCTAssertGreaterThan(try segmentNames().count, 2)
        try assertPrivate("after segment rolls")
        try store.snapshotWriter.writeSnapshot(lsn: 20, bytes: [1, 2, 3])
        try assertPrivate("after a snapshot")
        try store.close()
        try assertPrivate("after close")
    }

    func testLooserModesOfAnExistingDirectoryAreTightened() throws {
        try writeLog(count: 3)
        chmod(directory, 0o755)
        for name in try fileNames() { chmod(path(name), 0o644) }
        let (store, _) = try open()
        defer { try? store.close() }
        try assertPrivate("after reopening a directory left 0755/0644")
        XCTAssertTrue(captured.warnings.contains { $0.contains("now 700") }, "\(captured.warnings)")
    }
}
