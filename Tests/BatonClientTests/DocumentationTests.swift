import BatonTestSupport
import Foundation
import XCTest

/// The DocC catalog (Sources/BatonClient/BatonClient.docc) against the module this test run built:
/// every symbol link must resolve (DocC with warnings as errors). `scripts/docs.sh` builds the same
/// documentation through swift-docc-plugin; this is the cheap check every `swift test` runs.
final class DocumentationTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    private func tool(_ name: String) throws -> String {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
            + ["/opt/swift/usr/bin"]
        return try XCTUnwrap(directories.map { $0 + "/" + name }.first { FileManager.default.isExecutableFile(atPath: $0) },
                             "\(name) not found (it comes with the Swift toolchain)")
    }

    private func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let outcome = try Subprocess.run(executable, arguments, mergingError: true)
        return (outcome.status, outcome.output)
    }

    /// DocC on `catalog` with BatonClient's symbols; returns its status and output.
    private func convert(_ catalog: String, symbolGraphs: String, output: String) throws -> (status: Int32, output: String) {
        try run(tool("docc"), ["convert", catalog, "--additional-symbol-graph-dir", symbolGraphs, "--warnings-as-errors",
                               "--output-path", output, "--fallback-display-name", "BatonClient",
                               "--fallback-bundle-identifier", "BatonClient"])
    }

    func testCatalogSymbolLinksResolve() throws {
        // The test binary sits in .build/<triple>/debug beside the modules it was built with.
        let build = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        let triple = build.deletingLastPathComponent().lastPathComponent
        let scratch = NSTemporaryDirectory() + "baton-docs-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try FileManager.default.createDirectory(atPath: scratch + "/symbols", withIntermediateDirectories: true)
        let extract = try run(tool("swift-symbolgraph-extract"), [
            "-module-name", "BatonClient", "-target", triple, "-I", build.path + "/Modules",
            "-I", Self.repository + "/Sources/COpenSSL", "-minimum-access-level", "public", "-output-dir", scratch + "/symbols",
        ])
        XCTAssertEqual(extract.status, 0, extract.output)

        let catalog = Self.repository + "/Sources/BatonClient/BatonClient.docc"
        let clean = try convert(catalog, symbolGraphs: scratch + "/symbols", output: scratch + "/out")
        XCTAssertEqual(clean.status, 0, clean.output)
        XCTAssertFalse(clean.output.contains("warning:"), clean.output)

        // The check can fail: the same catalog with one link to nothing is refused.
        try FileManager.default.copyItem(atPath: catalog, toPath: scratch + "/broken.docc")
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: scratch + "/broken.docc/TLS.md"))
        handle.seekToEndOfFile()
        handle.write(Data("\nSee ``BatonClient/noSuchMethod(_:)``.\n".utf8))
        try handle.close()
        let broken = try convert(scratch + "/broken.docc", symbolGraphs: scratch + "/symbols", output: scratch + "/out2")
        XCTAssertNotEqual(broken.status, 0, broken.output)
        XCTAssertTrue(broken.output.contains("noSuchMethod"), broken.output)
    }
}
