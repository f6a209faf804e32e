import BatonTestSupport
import Foundation
import XCTest

/// The Python client (clients/python) runs its own tests, golden vectors and a real batond included,
/// against the batond this build made: `python3 -m unittest` from the test suite.
final class PythonClientTests: XCTestCase {
    func testThePythonClientPassesItsTests() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        var environment = ProcessInfo.processInfo.environment
        environment["BATOND"] = BuiltProducts.path("batond")
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        let python = try Subprocess.run("/usr/bin/env", ["python3", "-m", "unittest", "discover", "-s", "tests", "-v"],
                                        environment: environment,
                                        currentDirectory: root.appendingPathComponent("clients/python").path, mergingError: true)
        let text = python.output
        XCTAssertEqual(python.status, 0, text)
        // Every live test ran: none skipped for want of a daemon.
        XCTAssertFalse(text.contains("skipped 'no batond"), text)
        XCTAssertTrue(text.contains("test_asyncio_client") && text.contains("\nOK"), text)
    }
}
