import ArgumentParser
import BatonProtocol
import CProcessControl
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs `baton run`'s command: spawns it, forwards signals to it, and ends it when the hold is lost.
/// One lock guards the phase so a lost hold, a forwarded signal and the command's exit never race
/// (a group is signalled only while its leader is unreaped, so never a recycled pid).
///
/// The command dies with baton, even with a `kill -9` of baton: it is started through `baton __exec`,
/// which asks the kernel for SIGKILL when its parent exits (PR_SET_PDEATHSIG) and then execs the
/// command. It runs in a process group of its own, so a lost hold ends everything it started. And it
/// inherits baton's connection to batond: the connection, and so the hold, ends only once baton and
/// the command have both exited — the lock cannot pass to another holder while the command still runs.
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
            kill(-pid, signal)
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
        kill(-pid, SIGTERM)
        let seconds = Double(grace.components.seconds) + Double(grace.components.attoseconds) / 1e18
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            lock.lock()
            defer { lock.unlock() }
            if case .running(let current) = phase, current == pid {
                FileHandle.standardError.write(Data("baton: run \(lockPath): command still running after the grace period; sending SIGKILL\n".utf8))
                kill(-pid, SIGKILL)
            }
        }
    }

    /// Spawns the command (unless the hold was already lost), waits for it, returns how it ended.
    /// `connection` is the socket to batond the command keeps open while it runs.
    func run(_ arguments: [String], environment: [String: String], connection: Int32) -> Outcome {
        lock.lock()
        if lost != nil {
            phase = .exited
            lock.unlock()
            return .exited(ExitStatus.holdLost)
        }
        // An interactive command gets the terminal: its group becomes the foreground one, and baton
        // takes the terminal back when it ends.
        let terminal = isatty(STDIN_FILENO) == 1 && tcgetpgrp(STDIN_FILENO) == getpgrp()
        let guarded = ["baton", GuardedExec.name, "--parent", String(getpid())] + (terminal ? ["--foreground"] : [])
            + ["--context", "run \(lockPath)", "--"] + arguments
        let spawned = Self.spawn(executable: "/proc/self/exe", guarded, environment: environment, inheriting: connection)
        defer { if terminal { GuardedExec.takeTerminal() } }
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

    /// posix_spawn with the forwarded signals reset to default and an empty mask (the command must not
    /// inherit baton's blocked signals), in a new process group, with `inheriting` kept open across exec.
    static func spawn(executable: String, _ arguments: [String], environment: [String: String],
                      inheriting descriptor: Int32) -> Result<pid_t, SpawnError> {
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
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 onto itself clears close-on-exec in the child only (POSIX 2024; glibc 2.29 and later).
        posix_spawn_file_actions_adddup2(&actions, descriptor, descriptor)

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        return status == 0 ? .success(pid) : .failure(SpawnError(code: status))
    }
}

/// `baton __exec --parent PID -- COMMAND...` (hidden): the first step of `baton run`'s child. It asks to
/// be killed when `baton run` exits, then becomes the command. Exits 127/126 when the command cannot
/// be run (as shells do), with one line on stderr.
struct GuardedExec: ParsableCommand {
    static let name = "__exec"
    static let configuration = CommandConfiguration(commandName: name, shouldDisplay: false)
    @Option var parent: Int32
    @Flag var foreground = false
    @Option var context: String = "run"
    @Argument(parsing: .postTerminator) var command: [String] = []

    func run() throws {
        guard !command.isEmpty else { throw ValidationError("missing '-- COMMAND'") }
        guard baton_set_parent_death_signal(SIGKILL) == 0 else {
            printError("\(context): cannot tie the command to baton (prctl: \(String(cString: strerror(errno))))")
            throw ExitCode(ExitStatus.failure)
        }
        // baton may have died before the request above: then nobody holds the lock for the command.
        guard getppid() == parent else { throw ExitCode(ExitStatus.holdLost) }
        if foreground { Self.takeTerminal() }
        let argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        execvp(command[0], argv)
        let code = errno
        printError("\(context): cannot run \(command[0]): \(String(cString: strerror(code)))")
        throw ExitCode(code == ENOENT ? 127 : 126)
    }

    /// Makes this process's group the terminal's foreground group (SIGTTOU ignored meanwhile: a
    /// background group may not otherwise change it).
    static func takeTerminal() {
        let previous = signal(SIGTTOU, SIG_IGN)
        tcsetpgrp(STDIN_FILENO, getpgrp())
        signal(SIGTTOU, previous)
    }
}
