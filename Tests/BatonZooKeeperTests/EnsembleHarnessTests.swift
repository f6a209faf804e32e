import BatonTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The harness itself: a 3-member ensemble forms, loses its leader and elects another, and the
/// harness stops exactly the JVMs it started.
final class EnsembleHarnessTests: XCTestCase {
    func testEnsembleElectsAgainAfterLeaderKillAndStopsItsProcesses() throws {
        XCTAssertTrue(ZooKeeperEnsemble.isInstalled, "install Debian's zookeeper (scripts/setup.sh)")
        var ensemble: ZooKeeperEnsemble? = try ZooKeeperEnsemble(members: 3)
        let members = ensemble!.members.map(\.id)
        let pids = members.map { ensemble!.pid($0) }
        XCTAssertTrue(pids.allSatisfy { $0 > 0 })
        let leader = try XCTUnwrap(ensemble!.leader(), "a serving ensemble has a leader")
        XCTAssertEqual(members.filter { ensemble!.mode($0) == .follower }.count, 2)

        ensemble!.kill(leader)
        XCTAssertFalse(ensemble!.isRunning(leader))
        try ensemble!.waitUntilServing(timeoutSeconds: 60)
        let next = try XCTUnwrap(ensemble!.leader())
        XCTAssertNotEqual(next, leader, "the two survivors elect one of them")

        // A frozen member does not answer; thawed, it serves again.
        let frozen = members.first { $0 != next && $0 != leader }!
        ensemble!.signal(frozen, SIGSTOP)
        XCTAssertNil(ensemble!.mode(frozen))
        ensemble!.signal(frozen, SIGCONT)
        try ensemble!.start(leader)
        try ensemble!.waitUntilServing(timeoutSeconds: 60)

        let directory = ensemble!.directory
        let started = pids + members.map { ensemble!.pid($0) }
        ensemble = nil
        for pid in started { XCTAssertNotEqual(kill(pid, 0), 0, "process \(pid) still exists after the harness went away") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory))
    }
}
