import BatonProtocol
@testable import BatonServer
import BatonTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Snapshots written in the background while the loop keeps changing the namespace. The snapshot
/// shares nodes with the live hash trie; found by the crash test: a debug `batond` died of an
/// assertion in swift-collections (`_UnsafePath.descendToChild` reading a node the loop had just
/// copied away from) because the snapshot thread dropped the last reference to that node at that
/// moment. Now the loop owns the snapshot and releases it (`SnapshotJob`).
final class CrashSnapshotTests: XCTestCase {
    /// The writer thread borrows the snapshot: the last reference goes on the thread that calls
    /// `releaseSource` (the loop), even while the writer thread is still alive and holds the job.
    func testTheSnapshotIsReleasedByTheLoopNotByTheWriterThread() {
        let releases = ReleaseRecorder()
        var snapshot: TrackedSnapshot? = TrackedSnapshot(releases)
        let job = SnapshotJob(serializing: { [snapshot] emit in try emit(snapshot!.bytes) })
        snapshot = nil
        let serialized = DispatchSemaphore(value: 0)
        let exitWriter = DispatchSemaphore(value: 0)
        let written = WrittenBytes()
        let writer = Thread {
            try? job.serialize { written.bytes += $0 }
            serialized.signal()  // as the writer posts `snapshotFinished`
            job.finish()
            exitWriter.wait()  // the writer (and its reference to the job) outlives the release
        }
        writer.name = "snapshot-writer"
        writer.start()
        serialized.wait()
        XCTAssertEqual(written.bytes, [1, 2, 3])
        XCTAssertEqual(releases.threads, [], "the snapshot is still alive while the loop holds the job")
        job.releaseSource()
        XCTAssertEqual(releases.threads, [Thread.current.description], "released here, by the loop")
        exitWriter.signal()
        job.waitUntilFinished()
    }

    func testWritesDuringBackToBackSnapshotsDoNotCrashTheDaemon() throws {
        let daemon = try TestDaemon(TestDaemon.Options(arguments: ["--fsync", "none", "--snapshot-every-records", "1"]))
        defer {
            if let run = testRun, run.failureCount > 0 {
                print("--- batond log, last 80 lines:\n" + daemon.standardError.split(separator: "\n").suffix(80).joined(separator: "\n"))
            }
        }
        let connection = try daemon.connect()
        try connection.handshake()
        // A tree of a few thousand nodes, so that each snapshot takes a while to serialize.
        let nodeCount = 3_000
        var batch: [UInt8] = []
        for index in 0..<nodeCount {
            batch += Codec.encodeRequest(.create(path: "/n\(index)", data: Array(repeating: UInt8(index % 251), count: 64), mode: .persistent),
                                         requestID: connection.takeRequestID())
        }
        try connection.sendRaw(batch)
        for _ in 0..<nodeCount { _ = try connection.receiveReply().result.get() }

        // Sets spread over the tree, pipelined, while a snapshot is always in progress.
        var random = SeededGenerator(seed: 42)
        var versions = [Int32](repeating: 0, count: nodeCount)
        for _ in 0..<40 {
            batch = []
            var indices: [Int] = []
            for _ in 0..<200 {
                let index = Int(random.next() % UInt64(nodeCount))
                indices.append(index)
                batch += Codec.encodeRequest(.set(path: "/n\(index)", data: [UInt8(truncatingIfNeeded: random.next())], expectedVersion: anyVersion),
                                             requestID: connection.takeRequestID())
            }
            try connection.sendRaw(batch)
            for index in indices {
                guard case .stat(let stat) = try connection.receiveReply().result.get() else {
                    return XCTFail("set answered something else")
                }
                versions[index] += 1
                XCTAssertEqual(stat.version, versions[index])
            }
        }
        XCTAssertTrue(daemon.isRunning, "batond died: \(daemon.waitForExit(timeoutSeconds: 1).map { "\($0)" } ?? "")")
        let snapshots = daemon.standardError.components(separatedBy: "snapshot finished").count - 1
        XCTAssertGreaterThan(snapshots, 1, "snapshots were written during the load")
        XCTAssertEqual(daemon.stop(), .exited(0))
    }
}

/// What the writer thread serialized (read after it signalled).
private final class WrittenBytes: @unchecked Sendable {
    var bytes: [UInt8] = []
}

/// Which threads released a `TrackedSnapshot`.
private final class ReleaseRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var released: [String] = []
    var threads: [String] { lock.withLock { released } }
    func record() { lock.withLock { released.append(Thread.current.description) } }
}

private final class TrackedSnapshot: @unchecked Sendable {
    let releases: ReleaseRecorder
    let bytes: [UInt8] = [1, 2, 3]
    init(_ releases: ReleaseRecorder) { self.releases = releases }
    deinit { releases.record() }
}
