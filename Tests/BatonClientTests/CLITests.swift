import XCTest
import Foundation
import Glibc
import BatonProtocol
import BatonRevision
import BatonTestSupport
@testable import BatonClient

/// The built `baton` binary as a subprocess against a real batond.
final class CLITests: LiveDaemonTestCase {

    struct Outcome {
        var status: Int32
        var output: String
        var error: String
        var errorLines: [Substring] { error.split(separator: "\n") }
    }

    /// Starts `baton ARGUMENTS --socket <daemon>`; the socket goes after the subcommand (and before `--`),
    /// unless `addingSocket` is false: then the arguments are as given.
    func start(_ arguments: [String], environment: [String: String] = [:], addingSocket: Bool = true) throws -> (Process, Pipe, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuiltProducts.path("baton"))
        var withSocket = arguments
        if addingSocket { withSocket.insert(contentsOf: ["--socket", daemon.socketPath], at: 1) }
        process.arguments = withSocket
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe(), error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        return (process, output, error)
    }

    func finish(_ started: (Process, Pipe, Pipe)) -> Outcome {
        let (process, output, error) = started
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
                       error: String(decoding: errorData, as: UTF8.self))
    }

    func baton(_ arguments: String..., environment: [String: String] = [:]) throws -> Outcome {
        finish(try start(arguments, environment: environment))
    }

    func client(_ name: String = "cli-test") async throws -> BatonClient {
        try await BatonClient.connect(to: daemon.endpoint, options: ClientOptions(clientName: name))
    }

    var scratch: URL { daemon.directory }

    // MARK: Node commands

    func testPingSucceedsAndFailsWithOneLineWithoutADaemon() throws {
        XCTAssertEqual(try baton("ping").status, 0)
        let unreachable = try runBatonAlone(["ping", "--socket", scratch.appendingPathComponent("nobody-here").path])
        let text = unreachable.error
        XCTAssertNotEqual(unreachable.status, 0)
        XCTAssertEqual(text.split(separator: "\n").count, 1, text)
        XCTAssertTrue(text.hasPrefix("baton: ping: "), text)
        XCTAssertTrue(text.contains("is batond running?") && text.contains("--socket"), "no hint what to do: \(text)")

        let missingDirectory = scratch.appendingPathComponent("no-such-dir/baton.sock").path
        let inMissing = try runBatonAlone(["ping", "--socket", missingDirectory])
        XCTAssertEqual(inMissing.status, 1)
        XCTAssertTrue(inMissing.error.contains("does not exist"), inMissing.error)
    }

    /// `baton ARGUMENTS` as given (no --socket added).
    func runBatonAlone(_ arguments: [String], environment: [String: String] = [:]) throws -> Outcome {
        finish(try start(arguments, environment: environment, addingSocket: false))
    }

    func testGlobalOptionsGoBeforeOrAfterTheSubcommand() throws {
        XCTAssertEqual(try runBatonAlone(["--socket", daemon.socketPath, "create", "/global"]).output, "/global\n")
        let listed = try runBatonAlone(["--socket=\(daemon.socketPath)", "--json", "ls", "/"])
        XCTAssertEqual(listed.status, 0, listed.error)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [String: Any])
        XCTAssertEqual(object["children"] as? [String], ["global"])
        let unknown = try runBatonAlone(["--socket", daemon.socketPath, "--bogus", "ping"])
        XCTAssertEqual(unknown.status, 64, unknown.error)
    }

    func testVersionOnBothBinariesAndInHello() throws {
        let version = try runBatonAlone(["--version"])
        XCTAssertEqual(version.status, 0, version.error)
        XCTAssertEqual(version.output, "\(BatonRevision.version)\n")
        let printed = try Subprocess.run(BuiltProducts.path("batond"), ["--version"]).output
        XCTAssertEqual(printed, "\(BatonRevision.version)\n")
        let ping = try baton("ping", "--json")
        XCTAssertEqual(ping.status, 0, ping.error)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(ping.output.utf8)) as? [String: Any])
        XCTAssertEqual(object["server"] as? String, BatonRevision.serverName)
        XCTAssertNotNil(object["roundTripMicroseconds"] as? Int)
    }

    func testJSONOutputOfStatGetAndLocks() async throws {
        XCTAssertEqual(try baton("create", "/json", "héllo").status, 0)
        let stat = try baton("stat", "--json", "/json")
        let statObject = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(stat.output.utf8)) as? [String: Any], stat.output)
        XCTAssertEqual(statObject["path"] as? String, "/json")
        XCTAssertEqual(statObject["dataLength"] as? Int, "héllo".utf8.count)
        XCTAssertEqual(statObject["kind"] as? String, "persistent")
        XCTAssertEqual(statObject["version"] as? Int, 0)
        let get = try baton("get", "--json", "/json")
        let getObject = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(get.output.utf8)) as? [String: Any], get.output)
        XCTAssertEqual(getObject["data"] as? String, "héllo")
        XCTAssertEqual(getObject["dataBase64"] as? String, Data("héllo".utf8).base64EncodedString())
        XCTAssertEqual((getObject["stat"] as? [String: Any])?["czxid"] as? Int, statObject["czxid"] as? Int)

        let holder = try await client("json-holder")
        let grant = try await holder.acquire("/locks/json")
        let locks = try baton("locks", "--json", "/locks/json")
        let locksObject = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(locks.output.utf8)) as? [String: Any], locks.output)
        let entries = try XCTUnwrap(locksObject["entries"] as? [[String: Any]])
        XCTAssertEqual(entries.count, 1)
        XCTAssertEqual(entries.first?["position"] as? String, "holder")
        XCTAssertEqual(entries.first?["token"] as? UInt64, grant.token)
        XCTAssertEqual(entries.first?["client"] as? String, "json-holder")
        XCTAssertEqual(entries.first?["node"] as? String, grant.node)
        try await holder.release(grant)
    }

    func testCheckTokenExitsZeroWhenCurrentAndThreeWhenNot() async throws {
        let holder = try await client("token-holder")
        let grant = try await holder.acquire("/locks/check")
        let current = try baton("check-token", "/locks/check", String(grant.token))
        XCTAssertEqual(current.status, 0, current.error)
        XCTAssertEqual(current.output, "current\n")
        try await holder.release(grant)
        let stale = try baton("check-token", "/locks/check", String(grant.token))
        XCTAssertEqual(stale.status, 3, stale.error)
        XCTAssertEqual(stale.output, "not current\n")
    }

    /// README.md's "Using it" block, pasted into a shell line by line, against a real batond.
    func testTheReadmeWalkThroughWorksAsWritten() throws {
        let readme = try String(contentsOf: URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("README.md"), encoding: .utf8)
        let afterIntro = try XCTUnwrap(readme.range(of: "## Using it"), "README has no 'Using it' section")
        let blockStart = try XCTUnwrap(readme.range(of: "```sh\n", range: afterIntro.upperBound..<readme.endIndex))
        let blockEnd = try XCTUnwrap(readme.range(of: "```", range: blockStart.upperBound..<readme.endIndex))
        let block = String(readme[blockStart.upperBound..<blockEnd.lowerBound])
        XCTAssertTrue(block.contains("baton run"), block)

        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/bash")
        shell.arguments = ["-e", "-c", block + "\nwait\n"]
        let binaries = URL(fileURLWithPath: BuiltProducts.path("baton")).deletingLastPathComponent().path
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = binaries + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment["BATON_SOCKET"] = daemon.socketPath
        shell.environment = environment
        shell.currentDirectoryURL = scratch
        let output = Pipe(), error = Pipe()
        shell.standardOutput = output
        shell.standardError = error
        try shell.run()
        let outcome = finish((shell, output, error))
        XCTAssertEqual(outcome.status, 0, outcome.error)
        XCTAssertEqual(outcome.error, "")
        let lines = outcome.output.split(separator: "\n")
        XCTAssertTrue(lines.contains("hello"), outcome.output)
        XCTAssertTrue(lines.contains("/jobs/job-0000000000"), outcome.output)
        XCTAssertTrue(lines.contains("job-0000000000"), "ls /jobs should list the job: \(outcome.output)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("holder exclusive token=") && $0.contains("client=baton run[") },
                      "locks should show the holder: \(outcome.output)")
    }

    func testLocksOfAnUnusedLockIsEmptyAndTheRootIsRefused() throws {
        let unused = try baton("locks", "/locks/never-used")
        XCTAssertEqual(unused.status, 0, unused.error)
        XCTAssertEqual(unused.output, "")
        let root = try baton("locks", "/")
        XCTAssertEqual(root.status, 64, root.error)
        XCTAssertTrue(root.error.contains("not a lock path"), root.error)
    }

    func testTCPNeedsTheTokenFile() throws {
        let tcpDaemon = try LiveDaemon(tcp: true)
        defer { tcpDaemon.stop() }
        let port = try XCTUnwrap(tcpDaemon.daemon.tcpPort)
        let tcp = "127.0.0.1:\(port)"
        let refused = try runBatonAlone(["ping", "--tcp", tcp])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.error.contains("notAuthorized"), refused.error)
        XCTAssertTrue(refused.error.contains("--tcp-token-file"), "the error should say what to do: \(refused.error)")
        let viaOption = try runBatonAlone(["create", "--tcp", tcp, "--tcp-token-file", tcpDaemon.daemon.tcpTokenPath, "/over-tcp"])
        XCTAssertEqual(viaOption.status, 0, viaOption.error)
        XCTAssertEqual(viaOption.output, "/over-tcp\n")
        let viaEnvironment = try runBatonAlone(["ls", "--tcp", tcp, "/"],
                                               environment: ["BATON_TCP_TOKEN_FILE": tcpDaemon.daemon.tcpTokenPath])
        XCTAssertEqual(viaEnvironment.status, 0, viaEnvironment.error)
        XCTAssertTrue(viaEnvironment.output.split(separator: "\n").contains("over-tcp"), viaEnvironment.output)
    }

    func testCreateLsGetSetStatRm() throws {
        XCTAssertEqual(try baton("create", "/cli", "top").output, "/cli\n")
        for name in ["zeta", "alpha", "mid"] {
            XCTAssertEqual(try baton("create", "/cli/\(name)").status, 0)
        }
        let sequential = try baton("create", "--sequential", "/cli/seq-", "s")
        XCTAssertEqual(sequential.status, 0)
        let sequentialPath = sequential.output.trimmingCharacters(in: .newlines)
        XCTAssertTrue(sequentialPath.range(of: #"^/cli/seq-[0-9]{10}$"#, options: .regularExpression) != nil, sequentialPath)

        let listing = try baton("ls", "/cli")
        XCTAssertEqual(listing.status, 0)
        XCTAssertEqual(listing.output, (["alpha", "mid", String(sequentialPath.dropFirst(5)), "zeta"].sorted())
            .map { $0 + "\n" }.joined())

        XCTAssertEqual(try baton("get", "/cli").output, "top")
        XCTAssertEqual(try baton("set", "/cli", "second").status, 0)
        XCTAssertEqual(try baton("get", "/cli").output, "second")
        let stale = try baton("set", "--version", "0", "/cli", "third")
        XCTAssertNotEqual(stale.status, 0)
        XCTAssertEqual(stale.errorLines.count, 1)
        XCTAssertTrue(stale.error.contains("badVersion"), stale.error)

        let stat = try baton("stat", "/cli")
        XCTAssertEqual(stat.status, 0)
        var fields: [String: String] = [:]
        for line in stat.output.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            fields[parts[0]] = parts[1]
        }
        XCTAssertEqual(Array(fields.keys).sorted(), ["ctime", "cversion", "czxid", "dataLength", "ephemeralOwner", "kind",
                                                     "mtime", "mzxid", "numChildren", "pzxid", "version"])
        XCTAssertEqual(fields["version"], "1")
        XCTAssertEqual(fields["dataLength"], "6")
        XCTAssertEqual(fields["numChildren"], "4")
        XCTAssertEqual(fields["kind"], "persistent")
        XCTAssertEqual(fields["ephemeralOwner"], "0x0")

        XCTAssertEqual(try baton("rm", "/cli/alpha").status, 0)
        let missing = try baton("rm", "/cli/alpha")
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertEqual(missing.errorLines.count, 1, missing.error)
        XCTAssertTrue(missing.error.hasPrefix("baton: rm /cli/alpha: noNode"), missing.error)
    }

    func testRmOfAMissingNodeFailsWithOneLine() throws {
        let outcome = try baton("rm", "/does/not/exist")
        XCTAssertEqual(outcome.status, 1)
        XCTAssertEqual(outcome.errorLines.count, 1, outcome.error)
        XCTAssertTrue(outcome.error.hasPrefix("baton: rm /does/not/exist: noNode"), outcome.error)
        XCTAssertEqual(outcome.output, "")
    }

    func testStatOfAMissingNodeFails() throws {
        let outcome = try baton("stat", "/nothing")
        XCTAssertEqual(outcome.status, 1)
        XCTAssertTrue(outcome.error.hasPrefix("baton: stat /nothing: noNode"), outcome.error)
        XCTAssertTrue(outcome.error.contains("/nothing does not exist"), outcome.error)
    }

    func testCreateRejectsEphemeralContainer() throws {
        XCTAssertEqual(try baton("create", "--ephemeral", "--container", "/x").status, 64)
    }

    func testWatchPrintsTheFirstEvent() async throws {
        let writer = try await client()
        try await writer.create("/watched", data: [1])
        let started = try start(["watch", "/watched"])
        // The watch is set once `baton watch` shows up as a session; change the node until it reports.
        // Output is one short line: it fits the pipe, so reading it after the exit cannot deadlock.
        var version: Int32 = 0
        while started.0.isRunning {
            try await Task.sleep(for: .milliseconds(50))
            if started.0.isRunning {
                try await writer.set("/watched", data: [2], version: version)
                version += 1
            }
        }
        let outcome = finish(started)
        XCTAssertEqual(outcome.status, 0, outcome.error)
        XCTAssertEqual(outcome.output, "dataChanged /watched\n")
    }

    func testWatchOnAMissingNodeReportsItsCreation() async throws {
        let writer = try await client()
        let started = try start(["watch", "/later"])
        // Create and delete until the watcher sees a creation (its watch may be set after our first create).
        while started.0.isRunning {
            try await Task.sleep(for: .milliseconds(50))
            try await writer.create("/later")
            try await writer.delete("/later")
        }
        let outcome = finish(started)
        XCTAssertEqual(outcome.status, 0, outcome.error)
        XCTAssertTrue(["created /later\n", "deleted /later\n"].contains(outcome.output), outcome.output)
    }

    // MARK: run

    func testRunPassesTokenAndNodeAndExitsWithTheCommandsStatus() throws {
        let outcome = try baton("run", "/locks/env", "--", "/bin/sh", "-c",
                                "echo \"$BATON_FENCING_TOKEN $BATON_LOCK_NODE $BATON_LOCK_PATH\"; exit 3")
        XCTAssertEqual(outcome.status, 3, outcome.error)
        let fields = outcome.output.trimmingCharacters(in: .newlines).split(separator: " ")
        guard fields.count == 3 else { return XCTFail("expected 'TOKEN NODE PATH', got \(outcome.output)") }
        XCTAssertNotNil(UInt64(fields[0]), outcome.output)
        XCTAssertTrue(fields[1].hasPrefix("/locks/env/"), outcome.output)
        XCTAssertEqual(fields[2], "/locks/env")

        let again = try baton("run", "/locks/env", "--", "/bin/sh", "-c", "echo $BATON_FENCING_TOKEN")
        XCTAssertEqual(again.status, 0)
        XCTAssertGreaterThan(UInt64(again.output.trimmingCharacters(in: .newlines)) ?? 0, UInt64(fields[0]) ?? .max)
    }

    func testRunReportsACommandKilledBySignalAs128PlusSignal() throws {
        let outcome = try baton("run", "/locks/sig", "--", "/bin/sh", "-c", "kill -TERM $$")
        XCTAssertEqual(outcome.status, 128 + SIGTERM)
    }

    func testRunOfAMissingCommandExits127AndReleases() async throws {
        let outcome = try baton("run", "/locks/missing", "--", "/nonexistent/command")
        XCTAssertEqual(outcome.status, 127)
        XCTAssertEqual(outcome.errorLines.count, 1, outcome.error)
        let other = try await client()
        let grant = try await other.tryAcquire("/locks/missing")
        try await other.release(grant)
    }

    func testRunTimesOutWith75AndRunsNothing() async throws {
        let holder = try await client("holder")
        _ = try await holder.acquire("/locks/busy")
        let marker = scratch.appendingPathComponent("ran").path
        for timeout in ["0", "0.2"] {
            let outcome = try baton("run", "--timeout", timeout, "/locks/busy", "--", "/usr/bin/touch", marker)
            XCTAssertEqual(outcome.status, 75, outcome.error)
            XCTAssertEqual(outcome.errorLines.count, 1, outcome.error)
            XCTAssertFalse(FileManager.default.fileExists(atPath: marker))
        }
    }

    /// Several lock paths: all or none (acquireAll, PROTOCOL.md §12.14), one token per lock.
    func testRunTakesSeveralLocksAllOrNone() async throws {
        let outcome = try baton("run", "/locks/set-b", "/locks/set-a", "--", "/bin/sh", "-c",
                                "echo \"$BATON_LOCK_PATH_1 $BATON_LOCK_PATH_2 $BATON_FENCING_TOKEN_1 $BATON_FENCING_TOKEN_2 $BATON_FENCING_TOKEN\"")
        XCTAssertEqual(outcome.status, 0, outcome.error)
        let fields = outcome.output.trimmingCharacters(in: .newlines).split(separator: " ").map(String.init)
        guard fields.count == 5 else { return XCTFail("expected 'PATH1 PATH2 TOKEN1 TOKEN2 TOKEN', got \(outcome.output)") }
        XCTAssertEqual(Array(fields[0...1]), ["/locks/set-b", "/locks/set-a"])
        XCTAssertNotNil(UInt64(fields[2]))
        XCTAssertNotEqual(fields[2], fields[3])
        XCTAssertEqual(fields[4], fields[2], "BATON_FENCING_TOKEN is the first lock's")

        let holder = try await client("holder")
        let held = try await holder.acquire("/locks/set-b")
        let marker = scratch.appendingPathComponent("set-ran").path
        let busy = try baton("run", "--timeout", "0.2", "/locks/set-a", "/locks/set-b", "--", "/usr/bin/touch", marker)
        XCTAssertEqual(busy.status, 75, busy.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker))
        let other = try await client("other")
        try await other.release(try await other.tryAcquire("/locks/set-a")) // the failed set kept nothing

        try await holder.release(held)
        let grants = try await other.acquireAll(["/locks/set-a", "/locks/set-b"], timeout: .seconds(10))
        XCTAssertEqual(grants.map(\.path), ["/locks/set-a", "/locks/set-b"])
        for grant in grants {
            let current = try await holder.checkToken(grant.path, token: grant.token)
            XCTAssertTrue(current, grant.path)
            try await other.release(grant)
        }
    }

    /// Two runs naming the same locks in opposite orders, again and again: each gets both, never a deadlock.
    func testRunsTakingTwoLocksInOppositeOrdersDoNotDeadlock() throws {
        for _ in 0..<3 {
            let first = try start(["run", "/locks/x", "/locks/y", "--", "/bin/sh", "-c", "sleep 0.1"])
            let second = try start(["run", "/locks/y", "/locks/x", "--", "/bin/sh", "-c", "sleep 0.1"])
            let outcomes = [finish(first), finish(second)]
            XCTAssertEqual(outcomes.map(\.status), [0, 0], outcomes.map(\.error).joined())
        }
    }

    func testRunEndsTheCommandWhenTheLeaseExpires() throws {
        let marker = scratch.appendingPathComponent("terminated").path
        let outcome = try baton("run", "--lease", "0.3", "--grace", "10", "/locks/lease", "--", "/bin/sh", "-c",
                                "trap 'echo term > \(marker); exit 0' TERM; while true; do sleep 0.05; done")
        XCTAssertEqual(outcome.status, 74, outcome.error)
        XCTAssertTrue(outcome.error.contains("lost"), outcome.error)
        XCTAssertTrue(FileManager.default.fileExists(atPath: marker), "the command never got SIGTERM")
    }

    func testRunRenewsTheLeaseWhileTheCommandRuns() throws {
        // The command outlives two leases, then asks whether its token is still current.
        let baton = BuiltProducts.path("baton")
        let outcome = try self.baton("run", "--lease", "1.2", "--renew", "/locks/renewed", "--", "/bin/sh", "-c",
                                     "sleep 2.5; exec '\(baton)' check-token --socket '\(daemon.socketPath)' /locks/renewed $BATON_FENCING_TOKEN")
        XCTAssertEqual(outcome.status, 0, outcome.error)
        XCTAssertEqual(outcome.output, "current\n")
        XCTAssertFalse(outcome.error.contains("lost"), outcome.error)

        let refused = try self.baton("run", "--renew", "/locks/renewed", "--", "/bin/true")
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.error.contains("--renew needs --lease"), refused.error)
    }

    func testRevokeAsksRevocableHoldersAndSaysWhenNobodyWasAsked() async throws {
        let holder = try await client("revocable")
        let requests = holder.revocationRequests()
        let grant = try await holder.acquire("/locks/revoke", owner: "w", revocable: true)
        let asked = try baton("revoke", "/locks/revoke")
        XCTAssertEqual(asked.status, 0, asked.error)
        XCTAssertEqual(asked.output, "1 holder asked\n")
        var iterator = requests.makeAsyncIterator()
        let request = await iterator.next()
        XCTAssertEqual(request?.node, grant.node)
        try await holder.release(grant)
        let nobody = try baton("revoke", "/locks/revoke")
        XCTAssertEqual(nobody.status, 3, nobody.error)
        XCTAssertEqual(nobody.output, "0 holders asked\n")
    }

    func testRunForwardsSIGTERMToTheCommand() throws {
        let ready = scratch.appendingPathComponent("ready").path
        let started = try start(["run", "/locks/forward", "--", "/bin/sh", "-c",
                                 "trap 'exit 42' TERM; touch \(ready); while true; do sleep 0.05; done"])
        try waitForFile(ready)
        kill(started.0.processIdentifier, SIGTERM)
        let outcome = finish(started)
        XCTAssertEqual(outcome.status, 42, outcome.error)
    }

    func testSixteenRunsOnOneLockExcludeEachOtherAndTokensIncreaseInGrantOrder() throws {
        let log = scratch.appendingPathComponent("log").path
        XCTAssertTrue(FileManager.default.createFile(atPath: log, contents: nil))
        // Each command appends start/end lines with its token; a second writer inside would interleave.
        let script = """
            echo "start $BATON_FENCING_TOKEN $$" >> \(log)
            sleep 0.02
            echo "end $BATON_FENCING_TOKEN $$" >> \(log)
            """
        let runs = try (0..<16).map { _ in try start(["run", "/locks/shared-file", "--", "/bin/sh", "-c", script]) }
        for run in runs {
            let outcome = finish(run)
            XCTAssertEqual(outcome.status, 0, outcome.error)
        }
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 32)
        var previousToken: UInt64 = 0
        for pair in stride(from: 0, to: lines.count - 1, by: 2) {
            let start = lines[pair].split(separator: " "), end = lines[pair + 1].split(separator: " ")
            XCTAssertEqual(start.first, "start", "\(lines)")
            XCTAssertEqual(end.first, "end", "\(lines)")
            XCTAssertEqual(start.dropFirst(), end.dropFirst(), "interleaved holders: \(lines)")
            let token = UInt64(start[1]) ?? 0
            XCTAssertGreaterThan(token, previousToken, "tokens must increase in grant order: \(lines)")
            previousToken = token
        }
    }

    func testKilledHolderPassesTheLockToTheNextWaiter() async throws {
        let holderStarted = scratch.appendingPathComponent("holder").path
        let waiterRan = scratch.appendingPathComponent("waiter").path
        let holder = try start(["run", "/locks/kill", "--", "/bin/sh", "-c",
                                "echo $$ > \(holderStarted).tmp; mv \(holderStarted).tmp \(holderStarted); exec sleep 600"])
        try waitForFile(holderStarted)
        let commandPID = pid_t(try String(contentsOfFile: holderStarted, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines))!
        defer { kill(commandPID, SIGKILL) }
        // The waiter records whether the killed holder's command still existed when it was granted.
        let waiter = try start(["run", "--name", "the-waiter", "/locks/kill", "--", "/bin/sh", "-c",
                                "state=$(awk '{print $3}' /proc/\(commandPID)/stat 2>/dev/null); "
                                    + "if [ -n \"$state\" ] && [ \"$state\" != Z ]; then echo alive; else echo gone; fi > \(waiterRan)"])
        let observer = try await client("observer")
        for _ in 0..<2_000 where try await observer.inspect("/locks/kill").count < 2 {
            try await Task.sleep(for: .milliseconds(10))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: waiterRan), "the waiter ran while the holder held")
        let listed = try baton("locks", "/locks/kill")
        XCTAssertTrue(listed.output.split(separator: "\n").last?.hasSuffix("client=the-waiter") ?? false, listed.output)
        kill(holder.0.processIdentifier, SIGKILL)
        let waiterOutcome = finish(waiter)
        XCTAssertEqual(waiterOutcome.status, 0, waiterOutcome.error)
        XCTAssertEqual(try String(contentsOfFile: waiterRan, encoding: .utf8), "gone\n",
                       "the killed baton's command still ran when the lock passed on")
        _ = finish(holder)
    }

    func testAKilledHolderWithALockDelayKeepsTheLockFromEveryoneMeanwhile() async throws {
        let started = scratch.appendingPathComponent("delayed").path
        let holder = try start(["run", "--lock-delay", "30", "/locks/delayed", "--", "/bin/sh", "-c",
                                "touch \(started); exec sleep 600"])
        try waitForFile(started)
        let observer = try await client("observer")
        let held = try await observer.inspect("/locks/delayed")
        XCTAssertEqual(held.map(\.position), [.holder])
        kill(holder.0.processIdentifier, SIGKILL)
        _ = finish(holder)
        // The hold ends with baton's connection; for 30 s nobody gets the lock.
        for _ in 0..<2_000 where try await !observer.inspect("/locks/delayed").isEmpty {
            try await Task.sleep(for: .milliseconds(10))
        }
        do {
            let grant = try await observer.tryAcquire("/locks/delayed")
            XCTFail("granted \(grant) inside the lock-delay")
        } catch {
            XCTAssertEqual(error.code, .lockBusy)
        }
    }

    func testLocksListsHoldersThenWaiters() async throws {
        let holder = try await client("holder-name")
        let waiter = try await client("waiter-name")
        let grant = try await holder.acquire("/locks/list")
        let waiting = Task { try await waiter.acquire("/locks/list") }
        for _ in 0..<2_000 where try await holder.inspect("/locks/list").count < 2 {
            try await Task.sleep(for: .milliseconds(10))
        }
        let outcome = try baton("locks", "/locks/list")
        XCTAssertEqual(outcome.status, 0, outcome.error)
        let lines = outcome.output.split(separator: "\n")
        XCTAssertEqual(lines.count, 2, outcome.output)
        XCTAssertTrue(lines[0].hasPrefix("holder exclusive token=\(grant.token) session=0x\(String(holder.session.id, radix: 16)) age="),
                      String(lines[0]))
        XCTAssertTrue(lines[0].hasSuffix("node=\(grant.node) client=holder-name"), String(lines[0]))
        XCTAssertTrue(lines[1].hasPrefix("waiter exclusive token="), String(lines[1]))
        XCTAssertTrue(lines[1].hasSuffix("client=waiter-name"), String(lines[1]))
        try await holder.release(grant)
        let next = try await waiting.value
        try await waiter.release(next)
    }

    func waitForFile(_ path: String) throws {
        for _ in 0..<2_000 {
            if FileManager.default.fileExists(atPath: path) { return }
            usleep(10_000)
        }
        throw LiveDaemonError("\(path) never appeared")
    }
}
