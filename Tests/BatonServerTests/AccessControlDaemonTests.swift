import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest

/// `batond --acl` against real Unix users (Proto/PROTOCOL.md §17): the test creates two throwaway
/// users and a group (useradd; it must run as root, as CI does) and runs the `baton` CLI as each.
final class AccessControlDaemonTests: DaemonTestCase {
    /// Throwaway accounts, removed in tearDown.
    private var users: [String] = []
    private var groups: [String] = []
    private var directory = ""
    /// alice: no test group. bob: member (supplementary) of `team`.
    private var alice = ""
    private var bob = ""
    private var team = ""

    override func setUpWithError() throws {
        guard geteuid() == 0 else {
            throw XCTSkip("needs root to create throwaway users with useradd (CI runs as root)")
        }
        directory = try makeTemporaryDirectory("baton-acl-")
        chmod(directory, 0o755)
        let suffix = String(getpid() % 100_000) + "-" + String(UInt32.random(in: 0..<100_000))
        team = "bt-g-\(suffix)"
        alice = "bt-a-\(suffix)"
        bob = "bt-b-\(suffix)"
        try run("/usr/sbin/groupadd", [team])
        groups.append(team)
        try run("/usr/sbin/useradd", ["-M", "-s", "/usr/sbin/nologin", alice])
        users.append(alice)
        try run("/usr/sbin/useradd", ["-M", "-s", "/usr/sbin/nologin", "-G", team, bob])
        users.append(bob)
    }

    override func tearDown() {
        super.tearDown()
        for user in users { _ = try? run("/usr/sbin/userdel", ["-f", user]) }
        // userdel removes a user's own group; the shared one goes here.
        for group in groups { _ = try? run("/usr/sbin/groupdel", [group]) }
        users.removeAll()
        groups.removeAll()
        if !directory.isEmpty { try? FileManager.default.removeItem(atPath: directory) }
    }

    // MARK: Helpers

    @discardableResult
    private func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        let outcome = try Subprocess.run(executable, arguments)
        if executable.hasSuffix("add") && outcome.status != 0 {
            throw TestSupportError.unexpected("\(executable) \(arguments): \(outcome.error)")
        }
        return (outcome.status, outcome.output, outcome.error)
    }

    /// `baton ARGUMENTS` run as `user` (setpriv: its uid, primary group and supplementary groups).
    private func baton(as user: String, _ daemon: TestDaemon, _ arguments: String...) throws -> (status: Int32, output: String, error: String) {
        let (_, id, _) = try run("/usr/bin/id", ["-u", user])
        let (_, gid, _) = try run("/usr/bin/id", ["-g", user])
        let baton = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("baton").path
        return try run("/usr/bin/setpriv", [
            "--reuid", id.trimmingCharacters(in: .whitespacesAndNewlines),
            "--regid", gid.trimmingCharacters(in: .whitespacesAndNewlines), "--init-groups",
            baton, "--socket", daemon.socketPath,
        ] + arguments)
    }

    /// A daemon with these rules, its socket open to every user (the rules are the guard).
    private func startDaemon(rules: String, listensOnTCP: Bool = false, extra: [String] = []) throws -> TestDaemon {
        let path = directory + "/acl"
        try rules.write(toFile: path, atomically: true, encoding: .utf8)
        var options = TestDaemon.Options(listensOnTCP: listensOnTCP, arguments: ["--acl", path, "--socket-mode", "0666"] + extra)
        options.logLevel = "info"
        let daemon = try TestDaemon(options)
        chmod(daemon.directory, 0o755)
        daemons.append(daemon)
        return daemon
    }

    private func rewriteRules(_ rules: String) throws {
        try rules.write(toFile: directory + "/acl", atomically: true, encoding: .utf8)
    }

    /// Waits until the daemon's log holds `text` `count` times (a SIGHUP is handled asynchronously).
    private func waitForLog(_ daemon: TestDaemon, _ text: String, count: Int) throws {
        let deadline = Date().addingTimeInterval(10)
        while daemon.standardError.components(separatedBy: text).count - 1 < count {
            guard Date() < deadline else { throw TestSupportError.timedOut("no \(count)x \"\(text)\" in the log") }
            usleep(10_000)
        }
    }

    private func denied(_ result: (status: Int32, output: String, error: String), file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(result.status, 1, result.error, file: file, line: line)
        XCTAssertTrue(result.error.contains("permissionDenied"), result.error, file: file, line: line)
    }

    private func allowed(_ result: (status: Int32, output: String, error: String), file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(result.status, 0, result.error, file: file, line: line)
    }

    // MARK: Tests

    func testUsersAndGroupsAreAllowedAndDeniedByTheMostSpecificRule() throws {
        let port = try TestDaemon.freeLoopbackPort()
        let daemon = try startDaemon(rules: """
            /          *              read
            /alice     user:\(alice)  all
            /team      group:\(team)  read,create,write
            """, extra: ["--metrics", "127.0.0.1:\(port)"])
        allowed(try baton(as: alice, daemon, "create", "/alice"))
        allowed(try baton(as: alice, daemon, "create", "/alice/x"))
        denied(try baton(as: alice, daemon, "create", "/team"))
        // bob is in the group through a supplementary membership.
        allowed(try baton(as: bob, daemon, "create", "/team"))
        allowed(try baton(as: bob, daemon, "set", "/team", "v"))
        denied(try baton(as: bob, daemon, "rm", "/team"))
        denied(try baton(as: bob, daemon, "create", "/alice/y"))
        // `*` lets both read everywhere it is the most specific rule.
        allowed(try baton(as: bob, daemon, "get", "/alice/x"))
        allowed(try baton(as: alice, daemon, "ls", "/"))
        // alice's rule at /alice decides there; the group rule does not reach it.
        allowed(try baton(as: alice, daemon, "rm", "/alice/x"))

        let metrics = try Exposition(try HTTPClient.get(port: port).body)
        XCTAssertEqual(metrics["baton_access_denied_total{op=\"create\"}"], 2)
        XCTAssertEqual(metrics["baton_access_denied_total{op=\"delete\"}"], 1)
        let aliceID = try run("/usr/bin/id", ["-u", alice]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let log = daemon.standardError
        XCTAssertTrue(log.contains("permission denied"), log)
        XCTAssertTrue(log.contains("uid=\(aliceID)"), log)
        XCTAssertTrue(log.contains("/team"), log)
    }

    func testSIGHUPReloadsTheRulesAndABadFileKeepsTheOldOnes() throws {
        let port = try TestDaemon.freeLoopbackPort()
        let daemon = try startDaemon(rules: "/ user:\(alice) read\n", extra: ["--metrics", "127.0.0.1:\(port)"])
        denied(try baton(as: alice, daemon, "create", "/a"))
        try rewriteRules("/ user:\(alice) read,create\n")
        daemon.kill(SIGHUP)
        try waitForLog(daemon, "access rules in force", count: 2)
        allowed(try baton(as: alice, daemon, "create", "/a"))

        try rewriteRules("/ user:\(alice) all\n/ user:bt-nobody-\(getpid()) all\n")
        daemon.kill(SIGHUP)
        try waitForLog(daemon, "access rules not reloaded", count: 1)
        XCTAssertTrue(daemon.isRunning)
        // The previous rules (read, create) still decide.
        allowed(try baton(as: alice, daemon, "create", "/b"))
        denied(try baton(as: alice, daemon, "rm", "/a"))
        XCTAssertTrue(daemon.standardError.contains("no such user: bt-nobody-\(getpid())"), daemon.standardError)
        let metrics = try Exposition(try HTTPClient.get(port: port).body)
        XCTAssertEqual(metrics["baton_access_rules_reload_failures_total"], 1)
        XCTAssertEqual(metrics["baton_access_rules_reloads_total"], 1)
    }

    func testABadFileAtStartStopsTheDaemonWithTheLine() throws {
        let path = directory + "/bad-acl"
        try "/ * read\n/locks group:no-such-group-\(getpid()) lock\n".write(toFile: path, atomically: true, encoding: .utf8)
        let (termination, output) = try TestDaemon.runToCompletion(arguments: [
            "--socket", directory + "/s.sock", "--in-memory", "--acl", path])
        XCTAssertEqual(termination, .exited(1), output)
        XCTAssertTrue(output.contains("line 2: no such group: no-such-group-\(getpid())"), output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/s.sock"))
    }

    func testNamedTCPTokensAreTheirOwnPrincipals() throws {
        let ciToken = TestDaemon.randomToken()
        try TestDaemon.writeTokenFile(directory + "/ci.token", contents: ciToken)
        let daemon = try startDaemon(rules: """
            token ci \(directory)/ci.token
            /   token:ci        all
            /   token:default   read
            """, listensOnTCP: true)
        let ci = try daemon.connectTCP(authenticating: false)
        ci.authenticationToken = ciToken
        try ci.handshake()
        XCTAssertNil(try ci.call(.create(path: "/ci", data: [], mode: .persistent)).result.errorCode)
        // The --tcp-token-file token is `token:default`: read only.
        let other = try daemon.connectTCP()
        try other.handshake()
        XCTAssertEqual(try other.call(.create(path: "/other", data: [], mode: .persistent)).result.errorCode, .permissionDenied)
        XCTAssertNil(try other.call(.get(path: "/ci", watch: false)).result.errorCode)
        // A token named nowhere is still refused.
        let stranger = try daemon.connectTCP(authenticating: false)
        try stranger.hello()
        XCTAssertEqual(try stranger.call(.authenticate(token: TestDaemon.randomToken())).result.errorCode, .notAuthorized)
    }

    func testForceReleaseNeedsAdminAndPassesTheLockOnWithAHigherToken() throws {
        let daemon = try startDaemon(rules: """
            /        uid:0          read,lock,create
            /        *              read,lock
            /locks   group:\(team)  admin
            """)
        let holder = try daemon.connect()
        try holder.handshake()
        guard case .granted(let node, let token) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/a"))) else {
            return XCTFail("not granted")
        }
        let waiter = try daemon.connect()
        try waiter.handshake()
        let waitingID = try waiter.send(.acquire(LockRequest(path: "/locks/a")))

        denied(try baton(as: alice, daemon, "force-release", "/locks/a"))
        let forced = try baton(as: bob, daemon, "force-release", "/locks/a")
        allowed(forced)
        XCTAssertEqual(forced.output, "1 hold or wait ended\n")

        XCTAssertEqual(try holder.nextEvent(), .lockLost(node: node, token: token, reason: .nodeDeleted))
        let grant = try waiter.receiveReply()
        XCTAssertEqual(grant.requestID, waitingID)
        guard case .success(.granted(_, let nextToken)) = grant.result else { return XCTFail("\(grant)") }
        XCTAssertGreaterThan(nextToken, token)
        XCTAssertEqual(try holder.call(.release(node: node, token: token)).result.errorCode, .lockLost)
    }
}

private extension Result where Success == ReplyBody, Failure == ReplyError {
    var errorCode: ErrorCode? { if case .failure(let error) = self { return error.code } else { return nil } }
}
