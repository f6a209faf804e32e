import Foundation

/// A batond started from the build products on a temporary socket, in memory; stopped with SIGTERM.
struct LaunchedDaemon {
    let process: Process
    let directory: String
    var socketPath: String { directory + "/batond.sock" }

    static func productsDirectory() -> URL {
        // The test bundle sits next to the executables of the same build.
        var url = URL(fileURLWithPath: CommandLine.arguments.first { $0.hasSuffix(".xctest") } ?? Bundle.main.bundlePath)
        while url.pathExtension == "xctest" || url.lastPathComponent == "MacOS" || url.lastPathComponent == "Contents" {
            url.deleteLastPathComponent()
        }
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("batond").path) { return url }
        return Bundle(for: BundleMarker.self).bundleURL.deletingLastPathComponent()
    }

    static func start() throws -> LaunchedDaemon {
        let directory = NSTemporaryDirectory() + "baton-bench-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = productsDirectory().appendingPathComponent("batond")
        process.arguments = ["--socket", directory + "/batond.sock", "--in-memory", "--log-level", "warning"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let daemon = LaunchedDaemon(process: process, directory: directory)
        for _ in 0..<200 {
            if FileManager.default.fileExists(atPath: daemon.socketPath) { return daemon }
            guard process.isRunning else { break }
            usleep(25_000)
        }
        daemon.stop()
        throw NSError(domain: "LaunchedDaemon", code: 1, userInfo: [NSLocalizedDescriptionKey: "batond did not create its socket"])
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

final class BundleMarker {}
