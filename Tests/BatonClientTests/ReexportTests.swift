import XCTest
import BatonClient  // alone: the protocol types users need come with it

/// Users of the library name endpoints, kinds and modes with `import BatonClient` alone (README).
final class ReexportTests: XCTestCase {
    func testProtocolTypesAreNamedThroughBatonClient() {
        let endpoint: Endpoint = .unix(path: "/run/baton.sock")
        let kind: LockKind = .shared
        let mode = CreateMode(kind: .ephemeral, sequential: true)
        XCTAssertEqual(endpoint, .unix(path: "/run/baton.sock"))
        XCTAssertEqual(kind, .shared)
        XCTAssertTrue(mode.sequential)
    }
}
