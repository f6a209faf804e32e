import XCTest
import Foundation
import Glibc
import BatonProtocol
import BatonTestSupport
@testable import BatonClient

/// Leader election (PROTOCOL.md §12.15) against a real batond: the Swift API, `baton elect` and
/// `baton leader [--watch]`.
extension CLITests {
    func testElectRunsOneLeaderAtATime() throws {
        let log = scratch.appendingPathComponent("elect-log").path
        XCTAssertTrue(FileManager.default.createFile(atPath: log, contents: nil))
        // Each leader appends start/end lines with its value; a second leader inside would interleave.
        let script = """
            echo "start $BATON_LEADER_VALUE $BATON_FENCING_TOKEN" >> \(log)
            sleep 0.02
            echo "end $BATON_LEADER_VALUE $BATON_FENCING_TOKEN" >> \(log)
            """
        let candidates = try (0..<8).map { index in
            try start(["elect", "/elections/file", "--value", "v\(index)", "--", "/bin/sh", "-c", script])
        }
        for candidate in candidates {
            let outcome = finish(candidate)
            XCTAssertEqual(outcome.status, 0, outcome.error)
        }
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 16)
        for pair in stride(from: 0, to: lines.count - 1, by: 2) {
            XCTAssertEqual(lines[pair].split(separator: " ").first, "start", "\(lines)")
            XCTAssertEqual(lines[pair].split(separator: " ").dropFirst(), lines[pair + 1].split(separator: " ").dropFirst(),
                           "two leaders at once: \(lines)")
        }
        XCTAssertEqual(Set(lines.map { $0.split(separator: " ")[1] }).count, 8, "every candidate led once")
        let none = try baton("leader", "/elections/file")
        XCTAssertEqual(none.status, 3, "every candidate resigned")
        XCTAssertEqual(none.output, "none\n")
    }

    func testLeaderDeathHandsOverAndLeaderWatchPrintsEachChange() async throws {
        let election = "/elections/e"
        let none = try baton("leader", election)
        XCTAssertEqual(none.status, 3)
        let watcher = try start(["leader", "--watch", "--json", election])
        let watched = OutputLines()
        watcher.1.fileHandleForReading.readabilityHandler = { watched.append($0.availableData) }
        defer { if watcher.0.isRunning { watcher.0.terminate() } }
        // Its first line says nobody leads: from then on it watches.
        for _ in 0..<2_000 where watched.values.isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertEqual(watched.values, ["none"])
        let readyA = scratch.appendingPathComponent("alpha").path, readyB = scratch.appendingPathComponent("beta").path
        let alpha = try start(["elect", election, "--value", "alpha", "--", "/bin/sh", "-c", "touch \(readyA); exec sleep 600"])
        try waitForFile(readyA)
        let current = try baton("leader", election)
        XCTAssertEqual(current.status, 0, current.error)
        XCTAssertTrue(current.output.hasPrefix("alpha session=0x"), current.output)
        let beta = try start(["elect", election, "--value", "beta", "--", "/bin/sh", "-c",
                              "trap 'exit 0' TERM; touch \(readyB); while true; do sleep 0.05; done"])
        let observer = try await client("observer")
        for _ in 0..<2_000 where try await observer.inspect(election).count < 2 {
            try await Task.sleep(for: .milliseconds(10))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: readyB), "beta ran while alpha led")
        // alpha's baton dies: its command dies with it, its session ends, beta leads.
        kill(alpha.0.processIdentifier, SIGKILL)
        try waitForFile(readyB)
        let next = try await observer.leader(election)
        XCTAssertEqual(next?.value, Array("beta".utf8))
        XCTAssertEqual(next?.clientName.hasPrefix("baton elect["), true)
        // A late write by an ex-leader hides the value; baton elect proclaims it again.
        _ = try await observer.set(election, data: [0, 0, 0, 0, 0, 0, 0, 1] + Array("stale".utf8))
        var restored = try await observer.leader(election)
        for _ in 0..<2_000 where restored?.value != Array("beta".utf8) {
            try await Task.sleep(for: .milliseconds(10))
            restored = try await observer.leader(election)
        }
        XCTAssertEqual(restored?.value, Array("beta".utf8))
        // Resign: beta's command ends on SIGTERM, baton releases.
        kill(beta.0.processIdentifier, SIGTERM)
        XCTAssertEqual(finish(beta).status, 0)
        let afterResign = try await observer.leader(election)
        XCTAssertNil(afterResign)
        // The watcher printed: nobody, alpha (perhaps first without its value), beta, nobody.
        for _ in 0..<2_000 where !(watched.values.last == "none" && watched.values.contains("beta")) {
            try await Task.sleep(for: .milliseconds(10))
        }
        // Whether it saw the moments without a value (before a proclamation, after the stale write) depends on timing.
        let values = watched.values.filter { $0 != "(no value yet)" }
            .reduce(into: [String]()) { runs, value in if runs.last != value { runs.append(value) } }
        XCTAssertEqual(values, ["none", "alpha", "beta", "none"], "\(watched.lines)")
        XCTAssertTrue(watcher.0.isRunning)
        _ = finish(alpha)
    }
}

extension ClientIntegrationTests {
    func testCampaignObserveResign() async throws {
        let first = try await connect("first")
        let second = try await connect("second")
        let observer = try await connect("observer")
        if daemon.isZooKeeper {
            // That store has no persistent watches (PROTOCOL.md §16): observing is refused by name, and
            // campaign, leader and resign work as on the embedded store.
            do {
                _ = try await observer.observeLeader("/elect")
                XCTFail("observeLeader on the ZooKeeper store")
            } catch {
                XCTAssertEqual(error.code, .unsupportedByStore)
            }
            let grant = try await first.campaign("/elect", value: Array("one".utf8))
            let leader = try await second.leader("/elect")
            XCTAssertEqual(leader?.value, Array("one".utf8))
            XCTAssertEqual(leader?.token, grant.token)
            try await first.resign(grant)
            let gone = try await observer.leader("/elect")
            XCTAssertNil(gone)
            return
        }
        let changes = try await observer.observeLeader("/elect")
        var iterator = changes.makeAsyncIterator()
        let initial = await iterator.next()
        XCTAssertEqual(initial, .some(nil), "nobody leads yet")
        let firstGrant = try await first.campaign("/elect", value: Array("one".utf8))
        let secondCampaign = Task { try await second.campaign("/elect", value: Array("two".utf8)) }
        var seen: [ElectionLeader] = []
        while seen.last?.value != Array("one".utf8) {
            guard case .some(.some(let leader)) = await iterator.next() else { return XCTFail("stream ended") }
            XCTAssertEqual(leader.sessionID, first.session.id)
            seen.append(leader)
        }
        let seenBySecond = try await second.leader("/elect")
        XCTAssertEqual(seenBySecond?.token, firstGrant.token)
        try await first.proclaim(firstGrant, value: Array("uno".utf8))
        // Events from before the proclamation (the second candidate's waiter) may still show "one".
        while true {
            guard case .some(.some(let leader)) = await iterator.next() else { return XCTFail("stream ended") }
            XCTAssertEqual(leader.token, firstGrant.token)
            if leader.value == Array("uno".utf8) { break }
            XCTAssertEqual(leader.value, Array("one".utf8))
        }
        try await first.resign(firstGrant)
        let secondGrant = try await secondCampaign.value
        XCTAssertGreaterThan(secondGrant.token, firstGrant.token)
        while true {
            guard case .some(.some(let leader)) = await iterator.next() else { return XCTFail("stream ended") }
            if leader.value == Array("two".utf8) {
                XCTAssertEqual(leader.sessionID, second.session.id)
                break
            }
            // An event from before the resign may still be read as the first leader; nobody else leads.
            XCTAssertTrue([firstGrant.token, secondGrant.token].contains(leader.token), "no other leader in between")
        }
        // An ex-leader's late proclamation names the wrong token: readers see no value, not a wrong one.
        try await first.proclaim(firstGrant, value: Array("stale".utf8))
        let afterStale = try await observer.leader("/elect")
        XCTAssertEqual(afterStale?.token, secondGrant.token)
        XCTAssertNil(afterStale?.value)
        try await second.resign(secondGrant)
        let gone = try await observer.leader("/elect")
        XCTAssertNil(gone)
    }
}

/// For `leader --json` output: the value each line names.
private extension OutputLines {
    /// "none" for no leader, "(no value yet)" for a leader without one, else its value.
    var values: [String] {
        lines.compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            if object["leader"] is NSNull { return "none" }
            return object["value"] as? String ?? "(no value yet)"
        }
    }
}
