@testable import BatonServer
import XCTest

/// `--fsync batch`: when the commit waits for the clients the last commit answered
/// (ServerLoop+Durability.swift, `GroupCommit`). Times are monotonic nanoseconds passed in.
final class GroupCommitTests: XCTestCase {
    /// A loop whose commits take 400 µs (a window of 200 µs) and whose last commit answered `peers`.
    private func groupCommit(peers: [UInt64]) -> GroupCommit {
        var commit = GroupCommit()
        commit.committed(nanoseconds: 400_000)
        commit.peers = Set(peers)
        return commit
    }

    func testOneClientAloneNeverWaits() {
        var commit = groupCommit(peers: [1])
        commit.heard(from: 1)  // its own next request is the record to commit
        XCTAssertEqual(commit.decide(now: 1_000), .commit)
        XCTAssertNil(commit.windowDeadline)
    }

    func testWaitsForTheOthersUntilAllAreIn() {
        var commit = groupCommit(peers: [1, 2, 3])
        commit.heard(from: 1)
        XCTAssertEqual(commit.decide(now: 1_000), .startWindow(microseconds: 200))
        XCTAssertEqual(commit.decide(now: 50_000), .wait)
        commit.heard(from: 2)
        XCTAssertEqual(commit.decide(now: 60_000), .wait)
        commit.heard(from: 3)
        XCTAssertEqual(commit.decide(now: 70_000), .commit, "everyone it waited for is in")
        commit.committed(nanoseconds: 400_000)
        XCTAssertNil(commit.windowDeadline)
        XCTAssertFalse(commit.windowRanOut)
    }

    /// A client that sends nothing (it holds a lock, or went quiet) costs one window, then the next
    /// commit does not wait; the one after may again.
    func testAWindowThatRunsOutIsNotRepeatedAtOnce() {
        var commit = groupCommit(peers: [1, 2])
        commit.heard(from: 1)
        XCTAssertEqual(commit.decide(now: 0), .startWindow(microseconds: 200))
        XCTAssertEqual(commit.decide(now: 199_999), .wait)
        XCTAssertEqual(commit.decide(now: 200_000), .commit, "the window ran out")
        commit.committed(nanoseconds: 400_000)

        commit.peers = [1, 2]
        commit.heard(from: 1)
        XCTAssertEqual(commit.decide(now: 1_000_000), .commit, "right after a window that ran out")
        commit.committed(nanoseconds: 400_000)

        commit.peers = [1, 2]
        commit.heard(from: 1)
        XCTAssertEqual(commit.decide(now: 2_000_000), .startWindow(microseconds: 200))
    }

    /// The window is half a recent commit, at most a millisecond; on a disk that syncs in a few
    /// microseconds it is not worth a timer.
    func testTheWindowFollowsTheDisk() {
        var fast = GroupCommit()
        fast.committed(nanoseconds: 10_000)
        fast.peers = [1, 2]
        fast.heard(from: 1)
        XCTAssertEqual(fast.decide(now: 0), .commit)

        var slow = GroupCommit()
        slow.committed(nanoseconds: 50_000_000)
        slow.peers = [1, 2]
        slow.heard(from: 1)
        XCTAssertEqual(slow.decide(now: 0), .startWindow(microseconds: GroupCommit.windowNanosecondsMax / 1_000))
    }

    /// A client that closes is not waited for.
    func testAClosedPeerIsNotWaitedFor() {
        var commit = groupCommit(peers: [1, 2])
        commit.heard(from: 1)
        XCTAssertEqual(commit.decide(now: 0), .startWindow(microseconds: 200))
        commit.heard(from: 2)  // closed
        XCTAssertEqual(commit.decide(now: 10_000), .commit)
    }
}
