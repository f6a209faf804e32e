import BatonProtocol
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs `baton run`'s command: spawns it, forwards signals to it, and ends it when the hold is lost.
/// One lock guards the phase so a lost hold, a forwarded signal and the command's exit never race
/// (a pid is signalled only while the child is unreaped, so never a recycled pid).
final class CommandSupervisor: @unchecked Sendable {
    enum Phase {
        case waiting
        case running(pid_t)
        case exited
    }

    enum Outcome {
        /// The command's exit status, or 128+N when signal N killed it.
        case exited(Int32)
        /// posix_spawn failed: 127 not found, 126 otherwise (as shells do).
        case spawnFailed(Int32, String)
    }

    let lockPath: String
    let grace: Duration
    private let lock = NSLock()
    private var phase = Phase.waiting
    private var lost: String?
    static let forwardedSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    init(lockPath: String, grace: Duration) {
        self.lockPath = lockPath
        self.grace = grace
    }

    var lostReason: String? {
        lock.lock()
        defer { lock.unlock() }
        return lost
    }

    /// Blocks the forwarded signals in this thread (threads started later inherit the mask) and waits
    /// for them on a thread of its own, so a signal never kills baton while it holds the lock.
    func startSignalForwarding() {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in Self.forwardedSignals { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let waitSet = set
        let thread = Thread { [self] in
            var mask = waitSet
            while true {
                var received: Int32 = 0
                guard sigwait(&mask, &received) == 0 else { continue }
                forward(received)
            }
        }
        thread.name = "baton.run.signals"
        thread.start()
    }

    private func forward(_ signal: Int32) {
        lock.lock()
        defer { lock.unlock() }
        switch phase {
        case .running(let pid):
            kill(pid, signal)
        case .waiting:
            // Still waiting for the lock: give up. Exiting closes the connection, which ends the session
            // and withdraws the wait.
            exit(128 + signal)
        case .exited:
            break
        }
    }

    /// The hold is gone: stop the command (SIGTERM, SIGKILL after the grace period).
    func holdLost(_ reason: String) {
        lock.lock()
        defer { lock.unlock() }
        if case .exited = phase { return }
        guard lost == nil else { return }
        lost = reason
        guard case .running(let pid) = phase else { return }
        FileHandle.standardError.write(Data("baton: run \(lockPath): \(reason); sending SIGTERM to the command (pid \(pid))\n".utf8))
        kill(pid, SIGTERM)
        let seconds = Double(grace.components.seconds) + Double(grace.components.attoseconds) / 1e18
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            lock.lock()
            defer { lock.unlock() }
            if case .running(let current) = phase, current == pid {
                FileHandle.standardError.write(Data("baton: run \(lockPath): command still running after the grace period; sending SIGKILL\n".utf8))
                kill(pid, SIGKILL)
            }
        }
    }

    /// Spawns the command (unless the hold was already lost), waits for it, returns how it ended.
    func run(_ arguments: [String], environment: [String: String]) -> Outcome {
        lock.lock()
        if lost != nil {
            phase = .exited
            lock.unlock()
            return .exited(ExitStatus.holdLost)
        }
        let spawned = Self.spawn(arguments, environment: environment)
        if case .success(let pid) = spawned { phase = .running(pid) } else { phase = .exited }
        lock.unlock()

        let pid: pid_t
        switch spawned {
        case .failure(let error):
            return .spawnFailed(error.code == ENOENT ? 127 : 126, String(cString: strerror(error.code)))
        case .success(let child):
            pid = child
        }
        // Wait without reaping first, so the pid stays ours while another thread may still signal it.
        var information = siginfo_t()
        while waitid(P_PID, id_t(pid), &information, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
        lock.lock()
        phase = .exited
        lock.unlock()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7f
        return .exited(signal == 0 ? (status >> 8) & 0xff : 128 + signal)
    }

    struct SpawnError: Error { var code: Int32 }

    /// posix_spawnp with the forwarded signals reset to default and an empty mask: the command must not
    /// inherit baton's blocked signals.
    static func spawn(_ arguments: [String], environment: [String: String]) -> Result<pid_t, SpawnError> {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in forwardedSignals + [SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let status = posix_spawnp(&pid, arguments[0], nil, &attributes, argv, envp)
        return status == 0 ? .success(pid) : .failure(SpawnError(code: status))
    }
}
