@testable import BatonLocks
import XCTest

/// `Waiter.isChild` compares the lock path eight bytes at a time: a difference at any byte, a
/// missing slash or a wrong length must each make it false (then the waiter builds its node path).
final class WaiterIsChildTests: XCTestCase {
    func testADifferenceAtAnyByteIsSeen() {
        let name = WaiterName(kind: .exclusive, session: 7, sequence: 3).name
        for length in 1..<40 {
            let lockPath = "/" + String(repeating: "k", count: length)
            XCTAssertTrue(Waiter.isChild(lockPath + "/" + name, of: lockPath), lockPath)
            XCTAssertFalse(Waiter.isChild(lockPath + "x" + name, of: lockPath), lockPath)
            XCTAssertFalse(Waiter.isChild(lockPath + "/" + name + "0", of: lockPath), lockPath)
            for index in 0...length {
                var bytes = Array(lockPath.utf8)
                bytes[index] = UInt8(ascii: "j")
                let other = String(decoding: bytes, as: UTF8.self)
                XCTAssertFalse(Waiter.isChild(other + "/" + name, of: lockPath), "\(lockPath) \(index)")
            }
        }
    }
}
