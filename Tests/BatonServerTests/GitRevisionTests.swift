import BatonProtocol
import BatonRevision
import BatonTestSupport
import Foundation
import XCTest

/// The git revision in `--version`, hello and `baton_build_info` (Plugins/GitRevision runs
/// scripts/git-revision.sh on every build).
final class GitRevisionTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    /// Runs the script on a package directory; returns the revision it wrote.
    private func revision(ofPackage package: String) throws -> String {
        let output = NSTemporaryDirectory() + "git-revision-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [Self.repository + "/scripts/git-revision.sh", package, output]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let text = try String(contentsOfFile: output + "/GeneratedRevision.swift", encoding: .utf8)
        let line = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("let gitRevision = ") })
        return String(line.dropFirst("let gitRevision = \"".count).dropLast())
    }

    private func write(_ text: String, _ path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    func testScriptReadsEveryCheckoutLayoutAndSaysUnknownWithoutGit() throws {
        let root = NSTemporaryDirectory() + "git-layouts-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let commit = "0123456789abcdef0123456789abcdef01234567"
        // A tarball: no .git.
        try FileManager.default.createDirectory(atPath: root + "/tarball", withIntermediateDirectories: true)
        XCTAssertEqual(try revision(ofPackage: root + "/tarball"), "unknown")
        // A fresh clone: the branch's ref packed.
        try write("ref: refs/heads/main\n", root + "/clone/.git/HEAD")
        try write("# pack-refs with: peeled fully-peeled sorted\n\(commit) refs/heads/main\n", root + "/clone/.git/packed-refs")
        XCTAssertEqual(try revision(ofPackage: root + "/clone"), "0123456")
        // A loose ref wins over the packed one (a commit since the clone).
        try write("fedcba9876543210fedcba9876543210fedcba98\n", root + "/clone/.git/refs/heads/main")
        XCTAssertEqual(try revision(ofPackage: root + "/clone"), "fedcba9")
        // A worktree: .git is a file; HEAD in the worktree's git directory, refs in the common one.
        try write("gitdir: \(root)/clone/.git/worktrees/w\n", root + "/worktree/.git")
        try write("ref: refs/heads/w\n", root + "/clone/.git/worktrees/w/HEAD")
        try write("../..\n", root + "/clone/.git/worktrees/w/commondir")
        try write("aaaaaaabbbbbbbcccccccdddddddeeeeeeefffff\n", root + "/clone/.git/refs/heads/w")
        XCTAssertEqual(try revision(ofPackage: root + "/worktree"), "aaaaaaa")
        // A detached HEAD.
        try write("\(commit)\n", root + "/clone/.git/HEAD")
        XCTAssertEqual(try revision(ofPackage: root + "/clone"), "0123456")
        // Garbage in HEAD is not passed on as a revision.
        try write("ref: refs/heads/\"; exit 1\n", root + "/clone/.git/HEAD")
        XCTAssertEqual(try revision(ofPackage: root + "/clone"), "unknown")
    }

    /// The build's revision is this checkout's (when git is there to ask), and the CLIs print it.
    func testTheBuildCarriesThisCheckoutsRevision() throws {
        XCTAssertEqual(BatonRevision.version, "\(BatonVersion.release) (\(BatonRevision.current))")
        XCTAssertEqual(BatonRevision.serverName, "batond \(BatonRevision.version)")
        XCTAssertEqual(try revision(ofPackage: Self.repository), BatonRevision.current)
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/git") else { return }
        let git = try Subprocess.run("/usr/bin/git", ["-C", Self.repository, "rev-parse", "--short=7", "HEAD"])
        guard git.status == 0 else { return }
        XCTAssertEqual(BatonRevision.current, git.output.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func testBuildInfoMetricHasTheRevision() throws {
        let port = try TestDaemon.freeLoopbackPort()
        let daemon = try TestDaemon(TestDaemon.Options(arguments: ["--metrics", "127.0.0.1:\(port)"]))
        defer { _ = daemon.stop() }
        let response = try HTTPClient.get(port: port)
        XCTAssertEqual(response.status, 200)
        let line = try XCTUnwrap(response.body.split(separator: "\n").first { $0.hasPrefix("baton_build_info{") })
        XCTAssertTrue(line.contains("revision=\"\(BatonRevision.current)\""), String(line))
        XCTAssertTrue(line.contains("version=\"\(BatonVersion.release)\""), String(line))
        XCTAssertEqual(line.split(separator: " ").last.flatMap { Double($0) }, 1, String(line))
    }
}
