import BatonProtocol
import BatonTestSupport
import Foundation
import Glibc
import XCTest

/// batond under systemd, without systemd: a datagram socket stands in for `$NOTIFY_SOCKET`
/// (`Type=notify`), and a socket bound here and passed as fd 3 with `LISTEN_FDS=1` stands in for a
/// .socket unit (socket activation).
final class SystemdTests: XCTestCase {
    private var directory = ""
    private var children: [pid_t] = []
    private var descriptors: [Int32] = []

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory("baton-test-")
    }

    override func tearDown() {
        for child in children {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        for descriptor in descriptors { close(descriptor) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func address(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        return address
    }

    private func bound(_ path: String, type: Int32) throws -> Int32 {
        let descriptor = socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        descriptors.append(descriptor)
        var address = address(path)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else { throw TestSupportError.system("bind \(path): \(String(cString: strerror(errno)))") }
        return descriptor
    }

    /// Starts batond through `sh`, which sets LISTEN_PID to its own pid and execs batond (same pid):
    /// what systemd does between fork and exec. `listener`, if given, becomes fd 3.
    private func spawnBatond(_ arguments: [String], environment: [String: String], listener: Int32?) throws -> pid_t {
        let script = (listener != nil ? "LISTEN_PID=$$ LISTEN_FDS=1 " : "") + "exec \"$0\" \"$@\""
        let argv = ["/bin/sh", "-c", script, try TestDaemon.executablePath()] + arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let listener { posix_spawn_file_actions_adddup2(&actions, listener, 3) }
        let log = directory + "/batond.log"
        posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        let merged = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LISTEN_") && $0.key != "NOTIFY_SOCKET" }
            .merging(environment) { $1 }
        let environmentStrings = merged.map { "\($0.key)=\($0.value)" }
        let argumentPointers: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let environmentPointers: [UnsafeMutablePointer<CChar>?] = environmentStrings.map { strdup($0) } + [nil]
        defer {
            argumentPointers.forEach { free($0) }
            environmentPointers.forEach { free($0) }
        }
        var child: pid_t = 0
        let result = posix_spawn(&child, "/bin/sh", &actions, nil, argumentPointers, environmentPointers)
        guard result == 0 else { throw TestSupportError.system("posix_spawn: \(String(cString: strerror(result)))") }
        children.append(child)
        return child
    }

    private var log: String { (try? String(contentsOfFile: directory + "/batond.log", encoding: .utf8)) ?? "" }

    /// Waits for a datagram on `descriptor`.
    private func receive(_ descriptor: Int32, timeoutSeconds: Int32 = 30) -> String? {
        var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, timeoutSeconds * 1_000) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4_096)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : nil
    }

    private func stop(_ child: pid_t) -> Int32? {
        kill(child, SIGTERM)
        var status: Int32 = 0
        guard waitpid(child, &status, 0) == child else { return nil }
        children.removeAll { $0 == child }
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : nil
    }

    func testReadinessIsSentToTheNotifySocketOnceBatondListens() throws {
        let notifyPath = directory + "/notify"
        let notify = try bound(notifyPath, type: Int32(SOCK_DGRAM.rawValue))
        let socketPath = directory + "/s.sock"
        let child = try spawnBatond(["--socket", socketPath, "--in-memory"], environment: ["NOTIFY_SOCKET": notifyPath], listener: nil)
        let message = try XCTUnwrap(receive(notify), "no readiness notification; batond log:\n\(log)")
        let lines = message.split(separator: "\n")
        XCTAssertTrue(lines.contains("READY=1"), message)
        XCTAssertTrue(lines.contains("MAINPID=\(child)"), message)
        // READY means clients are served from now on.
        let connection = try RawConnection(unixPath: socketPath)
        try connection.hello()
        XCTAssertEqual(try connection.callSuccessfully(.ping), .empty)
        connection.close()
        XCTAssertEqual(stop(child), 0, log)
    }

    func testAListenerPassedAsFileDescriptorThreeIsServedAndLeftInPlace() throws {
        let socketPath = directory + "/activated.sock"
        let listener = try bound(socketPath, type: Int32(SOCK_STREAM.rawValue))
        XCTAssertEqual(listen(listener, 16), 0)
        // No --socket: the path comes from the passed socket. A client may connect before batond runs
        // (systemd's point): it waits in the backlog.
        let early = try RawConnection(unixPath: socketPath)
        let child = try spawnBatond(["--in-memory"], environment: ["XDG_RUNTIME_DIR": directory + "/elsewhere"], listener: listener)
        _ = try early.handshake(clientName: "activated")
        guard case .granted = try early.callSuccessfully(.acquire(LockRequest(path: "/locks/activated"))) else {
            return XCTFail("acquire through the passed socket")
        }
        let second = try RawConnection(unixPath: socketPath)
        try second.hello()
        XCTAssertEqual(try second.callSuccessfully(.ping), .empty)
        early.close()
        second.close()
        XCTAssertEqual(stop(child), 0, log)
        XCTAssertTrue(log.contains("activated.sock"), "the ready line names the passed socket:\n\(log)")
        var information = stat()
        XCTAssertEqual(lstat(socketPath, &information), 0, "the socket file belongs to the .socket unit: batond leaves it")
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/elsewhere"))
    }

    func testTwoPassedSocketsAreRefusedByName() throws {
        let first = try bound(directory + "/a.sock", type: Int32(SOCK_STREAM.rawValue))
        XCTAssertEqual(listen(first, 1), 0)
        let script = "LISTEN_PID=$$ LISTEN_FDS=2 exec \"$0\" --in-memory"
        let process = try Subprocess.run("/bin/sh", ["-c", script, try TestDaemon.executablePath()])
        let text = process.error
        XCTAssertEqual(process.status, 1)
        XCTAssertTrue(text.contains("systemd passed 2 sockets"), text)
    }
}
