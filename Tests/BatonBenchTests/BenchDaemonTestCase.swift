import BatonTestSupport
import XCTest

/// A test case with a batond of its own per test (logging warnings only: the scenarios are chatty),
/// stopped after it.
class BenchDaemonTestCase: XCTestCase {
    var daemon: TestDaemon!

    override func setUpWithError() throws {
        try super.setUpWithError()
        var options = TestDaemon.Options()
        options.logLevel = "warning"
        daemon = try TestDaemon(options)
    }

    override func tearDown() {
        _ = daemon?.stop()
        daemon = nil
        super.tearDown()
    }
}
