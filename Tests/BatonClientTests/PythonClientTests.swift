import Foundation
import XCTest

/// The Python client (clients/python) runs its own tests, golden vectors and a real batond included,
/// against the batond this build made: `python3 -m unittest` from the test suite.
final class PythonClientTests: XCTestCase {
    func testThePythonClientPassesItsTests() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-m", "unittest", "discover", "-s", "tests", "-v"]
        python.currentDirectoryURL = root.appendingPathComponent("clients/python")
        var environment = ProcessInfo.processInfo.environment
        environment["BATOND"] = BuiltProducts.path("batond")
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        python.environment = environment
        let output = Pipe()
        python.standardOutput = output
        python.standardError = output
        try python.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        python.waitUntilExit()
        XCTAssertEqual(python.terminationStatus, 0, text)
        // Every live test ran: none skipped for want of a daemon.
        XCTAssertFalse(text.contains("skipped 'no batond"), text)
        XCTAssertTrue(text.contains("test_asyncio_client") && text.contains("\nOK"), text)
    }
}
