import Foundation
import XCTest
@testable import BatonStore

/// Inputs the recovery fuzz target (Fuzz/, `scripts/fuzz.sh recovery`) found, made by hand: each
/// crashed the store before its fix.
final class FuzzFindingTests: StoreTestCase {
    /// A segment named for LSN 0 (LSNs start at 1; the store never writes one) whose header does not
    /// match its name: recovery computed "the LSN before it" as 0 - 1 and trapped. Now it is damage:
    /// refused by name, set aside by --repair.
    func testSegmentNamedForLSNZeroIsRefusedNotATrap() throws {
        try writeLog(count: 3)
        try FileManager.default.moveItem(atPath: path(segmentName(1)), toPath: path(segmentName(0)))
        try assertRefused(file: segmentName(0), offset: 0)
        let (store, recovery) = try openRepairing()
        defer { try? store.close() }
        XCTAssertTrue(recovery.records.isEmpty)
        XCTAssertEqual(recovery.repairs.count, 1, "\(recovery.repairs)")
        XCTAssertTrue(try fileNames().contains(segmentName(0) + ".corrupt"))
    }
}
