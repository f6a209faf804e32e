import XCTest
import Foundation
import Glibc
import BatonProtocol
import BatonTestSupport
@testable import BatonClient

/// `baton backup` while batond serves, then `batond --restore` into a wiped data directory: every
/// node comes back as it was at the backup, and the counters behind sequence numbers and fencing
/// tokens never go back.
final class BackupRestoreTests: XCTestCase {
    struct NodeImage: Equatable {
        var data: [UInt8]
        var stat: Stat
    }

    /// Every node below `root` that survives a restart (persistent; lock nodes are ephemeral).
    func image(_ client: BlockingClient, _ root: String = "/") throws -> [String: NodeImage] {
        var result: [String: NodeImage] = [:]
        var pending = [root]
        while let path = pending.popLast() {
            let (data, stat) = try client.get(path)
            if stat.kind == .persistent && path != "/" { result[path] = NodeImage(data: data, stat: stat) }
            for name in try client.children(path) { pending.append(path == "/" ? "/" + name : path + "/" + name) }
        }
        return result
    }

    func runBaton(_ arguments: [String]) throws -> Subprocess.Outcome {
        try Subprocess.run(BuiltProducts.path("baton"), arguments)
    }

    func testBackupWipeRestoreBringsBackEveryNodeAndTheCounters() throws {
        // Few records per snapshot: the backup must cover both the periodic snapshot and the log after it.
        let daemon = try TestDaemon(TestDaemon.Options(arguments: ["--snapshot-every-records", "7"]))
        let endpoint = Endpoint.unix(path: daemon.socketPath)
        let client = try BlockingClient.connect(to: endpoint, options: ClientOptions(clientName: "backup-test"))
        try client.create("/app", data: Array("config".utf8))
        try client.create("/app/db", data: [0, 1, 2, 255])
        try client.set("/app/db", data: Array("v2".utf8))
        try client.create("/jobs")
        var sequenceNames: [String] = []
        for _ in 0..<5 { sequenceNames.append(try client.create("/jobs/job-", mode: .persistentSequential)) }
        try client.delete(sequenceNames[1])
        var tokens: [UInt64] = []
        for _ in 0..<3 {
            let grant = try client.acquire("/locks/deploy")
            tokens.append(grant.token)
            try client.release(grant)
        }
        let held = try client.acquire("/locks/held")
        tokens.append(held.token)

        // A writer keeps changing the namespace while the backup is taken.
        let writer = try BlockingClient.connect(to: endpoint, options: ClientOptions(clientName: "backup-writer"))
        try writer.create("/load")
        let stopWriting = Atomic(false)
        let writerDone = DispatchSemaphore(value: 0)
        Thread {
            var index = 0
            while !stopWriting.load() {
                _ = try? writer.create("/load/n\(String(index).leftPad(6))", data: Array("\(index)".utf8))
                index += 1
            }
            writerDone.signal()
        }.start()
        usleep(20_000)
        let before = try image(client)
        let backupFile = daemon.directory + "/backups/one.bak"
        try FileManager.default.createDirectory(atPath: daemon.directory + "/backups", withIntermediateDirectories: true)
        let outcome = try runBaton(["backup", "--socket", daemon.socketPath, "--json", backupFile])
        stopWriting.store(true)
        writerDone.wait()
        XCTAssertEqual(outcome.status, 0, outcome.error)
        let reported = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as? [String: Any], outcome.output)
        XCTAssertEqual(reported["file"] as? String, backupFile)
        let size = try XCTUnwrap((try FileManager.default.attributesOfItem(atPath: backupFile)[.size] as? NSNumber)?.intValue)
        XCTAssertEqual((reported["bytes"] as? NSNumber)?.intValue, size)
        XCTAssertGreaterThan((reported["lsn"] as? NSNumber)?.intValue ?? 0, 0)

        // Changes after the backup are not in it.
        try client.create("/after-backup")
        try client.set("/app", data: Array("changed".utf8))
        let highestBefore = tokens.max()!
        let writerCount = try client.children("/load").count
        XCTAssertGreaterThan(writerCount, 0)
        client.disconnect()
        writer.disconnect()

        XCTAssertNotNil(daemon.stop())
        try FileManager.default.removeItem(atPath: daemon.dataDirectory)
        daemon.options.arguments += ["--restore", backupFile]
        try daemon.start()

        let restored = try BlockingClient.connect(to: endpoint, options: ClientOptions(clientName: "after-restore"))
        let after = try image(restored)
        // Every node that existed before the backup is back, byte for byte and stat for stat.
        for (path, node) in before where !path.hasPrefix("/load") {
            XCTAssertEqual(after[path], node, "\(path) after the restore")
        }
        XCTAssertNil(after["/after-backup"])
        XCTAssertEqual(after["/app"]?.data, Array("config".utf8))
        // The writer's nodes form an unbroken prefix: the backup is one moment, not a blend.
        let loaded = try restored.children("/load").sorted()
        XCTAssertEqual(loaded, (0..<loaded.count).map { "n" + String($0).leftPad(6) })
        XCTAssertLessThanOrEqual(loaded.count, writerCount)

        // Counters never go back: a new sequence number follows the last one, a new token is above every earlier one.
        let next = try restored.create("/jobs/job-", mode: .persistentSequential)
        XCTAssertGreaterThan(next, sequenceNames.last!)
        let grant = try restored.acquire("/locks/deploy")
        XCTAssertGreaterThan(grant.token, highestBefore)
        XCTAssertGreaterThan(grant.token, before.values.map(\.stat.modifiedTransaction).max()!)
        restored.disconnect()
        _ = daemon.stop()
    }

    func testPipelinedBackupsTakeTurnsAndAllSucceed() throws {
        let daemon = try TestDaemon()
        let connection = try daemon.connect()
        _ = try connection.handshake()
        for index in 0..<20 {
            _ = try connection.callSuccessfully(.create(path: "/p\(index)", data: Array(repeating: UInt8(index), count: 1_000), mode: .persistent))
        }
        // More than run at once (2): the rest wait their turn, none is refused.
        let files = (0..<6).map { daemon.directory + "/pipelined-\($0).bak" }
        let requestIDs = try files.map { try connection.send(.backup(file: $0)) }
        var answered: [UInt32: ReplyBody] = [:]
        for _ in files {
            let reply = try connection.receiveReply(timeoutSeconds: 30)
            answered[reply.requestID] = try reply.result.get()
        }
        for (requestID, file) in zip(requestIDs, files) {
            guard case .backedUp(_, let bytes)? = answered[requestID] else { return XCTFail("\(file): \(String(describing: answered[requestID]))") }
            let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)
            XCTAssertEqual(UInt64(size.intValue), bytes)
        }
        connection.close()
        _ = daemon.stop()
    }

    func testBackupOverTCPIsRefused() throws {
        let daemon = try TestDaemon(TestDaemon.Options(listensOnTCP: true))
        let connection = try daemon.connectTCP()
        _ = try connection.handshake()
        let file = daemon.directory + "/tcp.bak"
        let reply = try connection.call(.backup(file: file))
        guard case .failure(let error) = reply.result else { return XCTFail("\(reply.result)") }
        XCTAssertEqual(error.code, .notAuthorized)
        XCTAssertFalse(FileManager.default.fileExists(atPath: file))
        connection.close()
        _ = daemon.stop()
    }

    func testRestoreRefusesANonEmptyDataDirectoryAndADamagedBackup() throws {
        let daemon = try TestDaemon()
        let client = try BlockingClient.connect(to: .unix(path: daemon.socketPath), options: ClientOptions())
        try client.create("/kept", data: [1])
        let backupFile = daemon.directory + "/kept.bak"
        try client.backup(to: backupFile)
        // Not absolute: refused by batond, nothing written.
        XCTAssertThrowsError(try client.backup(to: "relative.bak")) { error in
            guard case .server(let reply) = error as? BatonError else { return XCTFail("\(error)") }
            XCTAssertEqual(reply.code, .invalidArgument)
        }
        client.disconnect()
        _ = daemon.stop()

        let intoLive = try TestDaemon.runToCompletion(arguments: ["--socket", daemon.directory + "/r.sock",
                                                                  "--data-dir", daemon.dataDirectory, "--restore", backupFile])
        XCTAssertEqual(intoLive.termination, .exited(1))
        XCTAssertTrue(intoLive.standardError.contains("is not empty"), intoLive.standardError)

        var damaged = try XCTUnwrap(FileManager.default.contents(atPath: backupFile))
        damaged[damaged.count - 1] ^= 0xff
        let damagedFile = daemon.directory + "/damaged.bak"
        XCTAssertTrue(FileManager.default.createFile(atPath: damagedFile, contents: damaged))
        let fromDamaged = try TestDaemon.runToCompletion(arguments: ["--socket", daemon.directory + "/r.sock",
                                                                     "--data-dir", daemon.directory + "/fresh", "--restore", damagedFile])
        XCTAssertEqual(fromDamaged.termination, .exited(1))
        XCTAssertTrue(fromDamaged.standardError.contains("checksum mismatch"), fromDamaged.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemon.directory + "/fresh/FORMAT"))
    }
}

private extension String {
    func leftPad(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// A flag shared with the writer thread.
private final class Atomic<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func load() -> Value { lock.withLock { value } }
    func store(_ newValue: Value) { lock.withLock { value = newValue } }
}
