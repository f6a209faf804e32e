import BatonTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The harness the crash tests lean on: telling that a killed daemon is gone even when Foundation's
/// `Process` misses it (seen once in some fifty kills: `waitForExit` gave up on a zombie).
final class CrashHarnessTests: XCTestCase {
    func testExitedChildReportsTheSignalWithoutReapingTheChild() throws {
        let child = try spawn(["/bin/sleep", "600"])
        XCTAssertNil(TestDaemon.exitedChild(child), "a running child has not exited")
        kill(child, SIGKILL)
        var termination: TestDaemon.Termination?
        let deadline = Date().addingTimeInterval(10)
        while termination == nil && Date() < deadline {
            termination = TestDaemon.exitedChild(child)
            if termination == nil { usleep(1_000) }
        }
        XCTAssertEqual(termination, .signaled(SIGKILL))
        XCTAssertEqual(TestDaemon.exitedChild(child), .signaled(SIGKILL), "asking again gives the same answer")

        // Still a zombie for its real owner to reap, with the same status.
        var status: Int32 = 0
        XCTAssertEqual(waitpid(child, &status, 0), child)
        XCTAssertEqual(status & 0x7f, SIGKILL)
        XCTAssertNil(TestDaemon.exitedChild(child), "a reaped child is no longer reported")
    }

    func testExitedChildReportsTheExitStatus() throws {
        let child = try spawn(["/bin/sh", "-c", "exit 3"])
        var termination: TestDaemon.Termination?
        let deadline = Date().addingTimeInterval(10)
        while termination == nil && Date() < deadline {
            termination = TestDaemon.exitedChild(child)
            if termination == nil { usleep(1_000) }
        }
        XCTAssertEqual(termination, .exited(3))
        var status: Int32 = 0
        XCTAssertEqual(waitpid(child, &status, 0), child)
    }

    private func spawn(_ arguments: [String]) throws -> pid_t {
        var child: pid_t = 0
        let pointers: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { pointers.forEach { free($0) } }
        let result = posix_spawn(&child, arguments[0], nil, nil, pointers, environ)
        guard result == 0 else { throw TestSupportError.system("posix_spawn: \(String(cString: strerror(result)))") }
        return child
    }
}
