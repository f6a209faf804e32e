import BatonServer
import BatonTestSupport
import Foundation
import Logging
import XCTest

/// Issue 8 item 7: batond refuses a socket place that another Unix user controls.
final class SocketOwnershipTests: XCTestCase {
    private var directory = ""
    private var impostor: Impostor?

    override func setUpWithError() throws {
        guard let impostor = try Impostor() else { throw XCTSkip("needs root, to create another user") }
        self.impostor = impostor
        directory = try makeTemporaryDirectory("baton-test-")
    }

    override func tearDown() {
        impostor?.stopListening()
        impostor = nil
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Starts an in-memory server on `socketPath`; returns its error, or nil (and stops it) if it started.
    private func startFailure(_ socketPath: String) -> String? {
        var configuration = ServerConfiguration(socketPath: socketPath)
        configuration.handlesSignals = false
        var logger = Logger(label: "ownership-test")
        logger.logLevel = .critical
        let server = Server(configuration: configuration, logger: logger)
        do {
            _ = try server.start()
        } catch {
            return error.message
        }
        server.stop()
        server.waitUntilStopped()
        return nil
    }

    /// The victim has no $XDG_RUNTIME_DIR: its socket goes in a sticky, world-writable directory
    /// like /tmp, where another user created the path first and listens on it.
    func testSocketPathCreatedFirstByAnotherUserIsRefusedNamingItsOwner() throws {
        let impostor = try XCTUnwrap(impostor)
        XCTAssertEqual(chmod(directory, 0o1777), 0)
        let path = directory + "/baton.sock"
        try impostor.listen(at: path)
        let failure = try XCTUnwrap(startFailure(path), "batond must not start on another user's socket")
        XCTAssertTrue(failure.contains("belongs to uid \(impostor.userID)"), failure)
        XCTAssertTrue(failure.contains("impersonating"), failure)
    }

    func testSocketDirectoryOwnedByAnotherUserIsRefused() throws {
        let impostor = try XCTUnwrap(impostor)
        try impostor.own(directory)
        XCTAssertEqual(chmod(directory, 0o755), 0)
        let failure = try XCTUnwrap(startFailure(directory + "/baton.sock"), "batond must not listen in another user's directory")
        XCTAssertTrue(failure.contains("socket directory \(directory) belongs to uid \(impostor.userID)"), failure)
    }

    /// Root's directories are trusted: /tmp (sticky) and a shared volume such as a Kubernetes
    /// emptyDir (0777, not sticky: deploy/kubernetes) still work.
    func testRootOwnedSharedDirectoriesAreAccepted() throws {
        XCTAssertEqual(chmod(directory, 0o1777), 0)
        XCTAssertNil(startFailure(directory + "/baton.sock"))
        XCTAssertEqual(chmod(directory, 0o777), 0)
        XCTAssertNil(startFailure(directory + "/baton.sock"))
    }
}
