import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Another Unix user, created for one test and removed after (`useradd`/`userdel`: tests run as
/// root in CI), and a listener it runs on a Unix socket path: the impostor of issue 8 item 7 that
/// creates a victim's socket first. Tests that need it skip when not root.
public final class Impostor {
    public let name: String
    public let userID: UInt32
    public let groupID: UInt32
    private var listener: Process?

    /// Nil when this process is not root (no other user can be made).
    public init?() throws {
        guard geteuid() == 0 else { return nil }
        name = "baton-imp-\(getpid() % 100_000)"
        _ = try Impostor.run("/usr/sbin/userdel", [name])  // a leftover of a killed run
        let created = try Impostor.run("/usr/sbin/useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        guard created == 0, let entry = getpwnam(name) else {
            throw TestSupportError.system("useradd \(name) exited with \(created)")
        }
        userID = entry.pointee.pw_uid
        groupID = entry.pointee.pw_gid
    }

    deinit {
        stopListening()
        _ = try? Impostor.run("/usr/sbin/userdel", [name])
    }

    /// Runs, as this user, a listener on `path` that accepts connections and answers nothing;
    /// returns once the socket exists.
    public func listen(at path: String) throws {
        let script = """
        import socket, sys, time
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(sys.argv[1]); s.listen(16)
        print("listening", flush=True)
        kept = []
        while True:
            connection, _ = s.accept(); kept.append(connection)
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=\(userID)", "--regid=\(groupID)", "--clear-groups",
                             "/usr/bin/python3", "-c", script, path]
        // Ready once it says so: the socket file exists from bind(2) on, but a connect before
        // listen(2) is refused.
        let said = Pipe()
        process.standardOutput = said
        try process.run()
        listener = process
        var output = ""
        while !output.contains("listening") {
            let data = said.fileHandleForReading.availableData
            if data.isEmpty { throw TestSupportError.system("the impostor's listener did not listen at \(path)") }
            output += String(decoding: data, as: UTF8.self)
        }
    }

    public func stopListening() {
        guard let listener else { return }
        self.listener = nil
        if listener.isRunning {
            kill(listener.processIdentifier, SIGKILL)
            listener.waitUntilExit()
        }
    }

    /// Makes `path` (a directory) belong to this user.
    public func own(_ path: String) throws {
        guard chown(path, userID, groupID) == 0 else { throw TestSupportError.system("chown \(path): \(String(cString: strerror(errno)))") }
    }

    private static func run(_ executable: String, _ arguments: [String]) throws -> Int32 {
        try Subprocess.run(executable, arguments).status
    }
}
