import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest
@testable import BatonClient

/// Issue 8 item 7: a socket served by another Unix user (an impostor that created the victim's
/// socket first) is refused by the client library and by `baton`, before anything is sent.
final class ImpostorTests: XCTestCase {
    private var directory = ""
    private var impostor: Impostor?
    private var socketPath: String { directory + "/baton.sock" }

    override func setUpWithError() throws {
        guard let impostor = try Impostor() else { throw XCTSkip("needs root, to create another user") }
        self.impostor = impostor
        directory = try makeTemporaryDirectory("baton-test-")
        XCTAssertEqual(chmod(directory, 0o1777), 0)  // like /tmp
        try impostor.listen(at: socketPath)
    }

    override func tearDown() {
        impostor?.stopListening()
        impostor = nil
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testClientRefusesASocketServedByAnotherUser() throws {
        let impostor = try XCTUnwrap(impostor)
        var options = ClientOptions(clientName: "victim")
        options.connectTimeout = .seconds(5)
        XCTAssertThrowsError(try BlockingClient.connect(to: .unix(path: socketPath), options: options)) { error in
            guard case .untrustedServer(let detail) = error as? BatonError else { return XCTFail("got \(error)") }
            XCTAssertTrue(detail.contains("uid \(impostor.userID)"), detail)
        }
    }

    /// A service user's own private directory (the systemd example's /run/baton): its server is
    /// trusted by the other users it lets in, so the peer check passes (this listener then says nothing).
    func testServerOwningAPrivateSocketDirectoryIsTrusted() throws {
        let impostor = try XCTUnwrap(impostor)
        impostor.stopListening()
        let service = directory + "/service"
        XCTAssertEqual(mkdir(service, 0o755), 0)
        try impostor.own(service)
        try impostor.listen(at: service + "/baton.sock")
        var options = ClientOptions(clientName: "group-member")
        options.connectTimeout = .milliseconds(300)
        XCTAssertThrowsError(try BlockingClient.connect(to: .unix(path: service + "/baton.sock"), options: options)) { error in
            XCTAssertEqual(error as? BatonError, .timedOut, "past the peer check, waiting for a hello reply")
        }
    }

    func testBatonRunDoesNotRunItsCommandUnderAnImpostor() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuiltProducts.path("baton"))
        process.arguments = ["run", "--socket", socketPath, "/locks/backup", "--", "/bin/echo", "ran"]
        let output = Pipe(), error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        process.waitUntilExit()
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let complaint = String(decoding: error.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertNotEqual(process.terminationStatus, 0)
        XCTAssertFalse(printed.contains("ran"), "the command must not run")
        XCTAssertTrue(complaint.contains("impersonating"), complaint)
    }
}
