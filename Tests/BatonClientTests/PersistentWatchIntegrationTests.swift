import XCTest
import Foundation
import Glibc
import BatonProtocol
import BatonTestSupport
@testable import BatonClient

/// Persistent and recursive watches (PROTOCOL.md §11.1) against a real batond over its socket:
/// the Swift client's stream and `baton watch --persistent/--recursive`.
final class PersistentWatchIntegrationTests: LiveDaemonTestCase {

    func connect(_ name: String) async throws -> BatonClient {
        try await BatonClient.connect(to: daemon.endpoint, options: ClientOptions(clientName: name))
    }

    func testStreamsKeepFiringUntilRemoved() async throws {
        let watcher = try await connect("watcher")
        let writer = try await connect("writer")
        let exact = try await watcher.watchEvents("/p", mode: .persistent)
        let tree = try await watcher.watchEvents("/tree", mode: .recursive)
        try await writer.create("/p")
        try await writer.set("/p", data: [1])
        try await writer.create("/p/child")
        try await writer.create("/tree")
        try await writer.create("/tree/a")
        try await writer.set("/tree/a", data: [1])
        try await writer.create("/treetop")
        try await writer.delete("/tree/a")

        var exactEvents: [WatchEvent] = []
        for await event in exact {
            exactEvents.append(event)
            if exactEvents.count == 3 { break }
        }
        XCTAssertEqual(exactEvents, [WatchEvent(type: .created, path: "/p"), WatchEvent(type: .dataChanged, path: "/p"),
                                     WatchEvent(type: .childrenChanged, path: "/p")])
        var treeEvents: [WatchEvent] = []
        for await event in tree {
            treeEvents.append(event)
            if treeEvents.count == 4 { break }
        }
        XCTAssertEqual(treeEvents, [WatchEvent(type: .created, path: "/tree"), WatchEvent(type: .created, path: "/tree/a"),
                                    WatchEvent(type: .dataChanged, path: "/tree/a"), WatchEvent(type: .deleted, path: "/tree/a")])

        try await watcher.removeWatch("/p", mode: .persistent)
        do {
            try await watcher.removeWatch("/p", mode: .persistent)
            XCTFail("removed twice")
        } catch {
            XCTAssertEqual(error.code, .noWatch)
        }
        // After removal: a change to /p sends nothing, so the next event is the recursive one's.
        let events = watcher.events()
        try await writer.set("/p", data: [2])
        try await writer.set("/tree", data: [2])
        for await event in events {
            XCTAssertEqual(event, .watch(type: .dataChanged, path: "/tree"))
            break
        }
    }

    func testBatonWatchRecursivePrintsEveryEventAsJSONLines() async throws {
        let writer = try await connect("writer")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuiltProducts.path("baton"))
        process.arguments = ["watch", "--socket", daemon.socketPath, "--recursive", "--json", "/cli"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = Pipe()
        let collected = OutputLines()
        output.fileHandleForReading.readabilityHandler = { handle in collected.append(handle.availableData) }
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        // The watch exists once an event shows up; until then, keep changing a node it covers.
        try await writer.create("/cli")
        var version: Int32 = 0
        while collected.lines.isEmpty {
            XCTAssertTrue(process.isRunning, "baton watch exited: \(collected.lines)")
            try await writer.set("/cli", data: [1], version: version)
            version += 1
            try await Task.sleep(for: .milliseconds(50))
        }
        let before = collected.lines.count
        try await writer.create("/cli/x")
        try await writer.delete("/cli/x")
        while collected.lines.count < before + 2 { try await Task.sleep(for: .milliseconds(20)) }
        let lines = collected.lines
        let objects = try lines.map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String]) }
        XCTAssertTrue(objects.dropLast(2).allSatisfy { $0 == ["type": "dataChanged", "path": "/cli"] }, "\(lines)")
        XCTAssertEqual(Array(objects.suffix(2)), [["type": "created", "path": "/cli/x"], ["type": "deleted", "path": "/cli/x"]])
        XCTAssertTrue(process.isRunning, "it keeps watching")
    }

    func testBatonWatchRejectsBothModes() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuiltProducts.path("baton"))
        process.arguments = ["watch", "--socket", daemon.socketPath, "--recursive", "--persistent", "/cli"]
        process.standardError = Pipe()
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 64)
    }
}
