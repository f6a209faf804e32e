import BatonAccess
@testable import BatonEngine
@testable import BatonServer
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// What every open connection and session costs in the server and the engine (issue 11: 10,000
/// sessions under 1 KiB each; BENCHMARKS.md, "Memory per session"). Sizes, not timings: a field
/// added in the wrong place, or padding, shows here before it shows in resident memory.
final class PerConnectionMemoryTests: XCTestCase {
    func testPerConnectionStateKeepsItsSize() {
        // Dictionary values: each byte costs again in the dictionary's free buckets.
        XCTAssertLessThanOrEqual(MemoryLayout<ConnectionState>.stride, 88, "was 144 before the access state was boxed, 72 before the waiting acquires moved in")
        XCTAssertLessThanOrEqual(MemoryLayout<SessionState>.stride, 56, "was 64")
        XCTAssertLessThanOrEqual(MemoryLayout<AdmissionTicket?>.stride, 64, "was 72")
    }

    #if canImport(Glibc)
    func testAConnectionObjectFitsItsMallocSizeClass() throws {
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "malloc_usable_size") else { throw XCTSkip("not glibc") }
        let usableSize = unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutableRawPointer) -> Int).self)
        let handle = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8)
        defer { handle.deallocate() }
        let connection = Connection(id: 1, transport: .unix, handle: handle)
        XCTAssertLessThanOrEqual(usableSize(Unmanaged.passUnretained(connection).toOpaque()), 216, "was 232")
    }
    #endif

    /// The boxed access state is still a value: a copy does not see the original's later changes,
    /// and a connection that never sets it allocates no box (clearing rules that were never set).
    func testBoxedAccessStateIsAValue() {
        var state = ConnectionState(transport: .unix, isAuthorized: true)
        state.accessRules = nil
        XCTAssertNil(state.accessBox, "nothing to keep, nothing allocated")
        XCTAssertEqual(state.access, AccessIdentity())
        state.access.userID = 7
        let copy = state
        state.access.userID = 8
        state.access.groupIDs = [1, 2]
        state.accessRules = (generation: 3, policy: AccessPolicy(rules: []))
        XCTAssertEqual(copy.access.userID, 7)
        XCTAssertEqual(copy.access.groupIDs, [])
        XCTAssertNil(copy.accessRules)
        XCTAssertEqual(state.access, AccessIdentity(userID: 8, groupIDs: [1, 2]))
        XCTAssertEqual(state.accessRules?.generation, 3)
    }
}
