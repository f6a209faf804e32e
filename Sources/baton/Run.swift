import ArgumentParser
import BatonClient
import BatonProtocol
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Hold a lock (or several, all or none) while a command runs.",
        discussion: """
            Acquires LOCKPATH, runs COMMAND with BATON_FENCING_TOKEN, BATON_LOCK_NODE and BATON_LOCK_PATH \
            in its environment, releases when it exits and exits with its status (128+N if killed by signal N). \
            SIGINT, SIGTERM and SIGHUP sent to baton are forwarded to COMMAND's process group. Heartbeats keep \
            the session alive meanwhile. COMMAND dies with baton (SIGKILL when baton exits, even by kill -9), and \
            the lock passes on only once both have exited; COMMAND runs in a process group of its own.
            With --lease N --renew, baton renews the lease every N/3 seconds while COMMAND runs, so the hold \
            outlives N as long as baton lives and reaches batond; if baton hangs or loses batond, the hold ends \
            at most N after the last renewal.
            If the lock is not granted within --timeout, nothing runs: one line on stderr, exit 75.
            If the hold is lost while COMMAND runs (lease expired, session expired, lock node deleted, or the \
            connection to batond dropped), COMMAND gets SIGTERM, then SIGKILL after --grace seconds; baton says \
            so on stderr and exits 74 once COMMAND has ended. With --stop-on-suspended the same happens as soon as \
            the hold is in doubt (a multi-host sidecar lost its ZooKeeper connection: lockSuspended); without it, \
            baton says on stderr when the hold is suspended and when it is resumed (lockResumed), and COMMAND runs on.
            With several LOCKPATHs, baton takes all of them or none (acquireAll: in path order, so two runs \
            naming the same locks in any order never deadlock); --timeout bounds the whole set. The first lock's \
            token, node and path are in the variables above, and lock I (from 1, in the order given) in \
            BATON_FENCING_TOKEN_I, BATON_LOCK_NODE_I and BATON_LOCK_PATH_I. --lock-delay takes one LOCKPATH.
            COMMAND not found: 127; not executable: 126; other errors: 1.
            """)

    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Take a shared (read) hold: shared holders run together, exclusive ones alone.") var shared = false
    @Option(help: "Take one of N permits of a semaphore.") var permits: UInt32?
    @Option(help: ArgumentHelp("Wait at most this long for the lock (0: try once). Default: forever.",
                               valueName: "SECONDS")) var timeout: Double?
    @Option(help: ArgumentHelp("Maximum hold time; past it the hold is lost.", valueName: "SECONDS")) var lease: Double?
    @Flag(help: "Renew the lease (every third of --lease) while COMMAND runs.") var renew = false
    @Option(help: ArgumentHelp("If baton dies holding the lock (not a release), nobody gets it for this long.",
                               valueName: "SECONDS")) var lockDelay: Double?
    @Option(help: ArgumentHelp("After a lost hold, time between SIGTERM and SIGKILL.", valueName: "SECONDS"))
    var grace: Double = 5
    @Option(help: ArgumentHelp("Client name shown by `baton locks` (default: baton run[PID]).", valueName: "NAME"))
    var name: String?
    @Flag(help: "Also stop COMMAND (exit 74) when the hold is suspended: the sidecar lost its ZooKeeper connection.")
    var stopOnSuspended = false
    @Argument(help: ArgumentHelp("Lock path.", valueName: "LOCKPATH")) var lockPath: String
    // One array for the rest: ArgumentParser allows no positional after an array of them, and `--` must
    // stay visible to tell more lock paths from the command.
    @Argument(parsing: .captureForPassthrough,
              help: ArgumentHelp("More lock paths (all or none), then -- COMMAND [ARGS...]. Options go before LOCKPATH.",
                                 valueName: "LOCKPATH... -- COMMAND"))
    var words: [String] = []
    var lockPaths: [String] { [lockPath] + words.prefix { $0 != "--" } }
    var command: [String] { words.firstIndex(of: "--").map { Array(words[($0 + 1)...]) } ?? [] }

    func validate() throws {
        if command.isEmpty { throw ValidationError("missing '-- COMMAND [ARGS...]'") }
        if let option = lockPaths.first(where: { $0.hasPrefix("-") }) {
            throw ValidationError("\(option): options go before LOCKPATH")
        }
        if lockPaths.count > LockSetMember.countMax { throw ValidationError("at most \(LockSetMember.countMax) lock paths") }
        if Set(lockPaths).count != lockPaths.count { throw ValidationError("a lock path is given twice") }
        if lockPaths.count > 1 && lockDelay != nil { throw ValidationError("--lock-delay takes one lock path") }
        if shared && permits != nil { throw ValidationError("give --shared or --permits, not both") }
        if let permits, permits == 0 { throw ValidationError("--permits must be at least 1") }
        if let timeout, !(timeout >= 0 && timeout < 4_000_000) { throw ValidationError("--timeout must be 0...4000000 seconds") }
        if let lease, !(lease > 0 && lease < 4_000_000) { throw ValidationError("--lease must be positive seconds") }
        if renew && lease == nil { throw ValidationError("--renew needs --lease") }
        if let lockDelay, !(lockDelay > 0 && lockDelay < 4_000_000) { throw ValidationError("--lock-delay must be positive seconds") }
        if !(grace >= 0 && grace < 86_400) { throw ValidationError("--grace must be 0...86400 seconds") }
    }

    static func duration(seconds: Double) -> Duration {
        .milliseconds(Int64((seconds * 1_000).rounded(.up)))
    }

    func run() throws {
        let kind: LockKind = shared ? .shared : permits != nil ? .semaphore : .exclusive
        let lockPath = lockPaths.joined(separator: " ")
        let supervisor = CommandSupervisor(lockPath: lockPath, grace: Self.duration(seconds: grace))
        supervisor.startSignalForwarding()
        let context = "run \(lockPath)"
        let client = try reporting(context) { () throws(BatonError) in
            try connection.connect(clientName: name ?? "baton run[\(getpid())]")
        }
        client.onClose { _ in supervisor.holdLost("connection to batond closed") }
        client.onLockLost { lost in supervisor.holdLost("lock lost (\(lost.reason), token \(lost.token))") }
        let events = client.events()
        let stopOnSuspended = self.stopOnSuspended
        Task {
            for await event in events {
                switch event {
                case .lockSuspended(_, let token) where stopOnSuspended:
                    supervisor.holdLost("lock suspended (batond lost its ZooKeeper connection, token \(token))")
                case .lockSuspended(_, let token):
                    printError("\(context): lock suspended (batond lost its ZooKeeper connection, token \(token)); command keeps running")
                case .lockResumed(_, let token):
                    printError("\(context): lock resumed (batond reconnected to ZooKeeper within its session, token \(token))")
                default:
                    break
                }
            }
        }

        let grants: [LockGrant]
        do throws(BatonError) {
            if lockPaths.count == 1 {
                grants = [try client.acquire(lockPaths[0], kind: kind, permits: permits ?? 1,
                                             timeout: timeout.map { Self.duration(seconds: $0) },
                                             lease: lease.map { Self.duration(seconds: $0) },
                                             // A lock-delay needs an owner token; this session has one owner.
                                             owner: lockDelay == nil ? nil : "baton-run",
                                             lockDelay: lockDelay.map { Self.duration(seconds: $0) })]
            } else {
                grants = try client.acquireAll(lockPaths.map { LockSetMember(path: $0, kind: kind, permits: permits ?? 1) },
                                               timeout: timeout.map { Self.duration(seconds: $0) },
                                               lease: lease.map { Self.duration(seconds: $0) })
            }
        } catch where error.code == .lockTimeout || error.code == .lockBusy {
            let waited = timeout.map { $0 == 0 ? "lock is busy" : "lock not granted within \($0)s" } ?? "\(error)"
            printError("\(context): \(waited); command not run")
            throw ExitCode(ExitStatus.lockNotGranted)
        } catch {
            printError("\(context): \(error)")
            throw ExitCode(ExitStatus.failure)
        }

        var environment = ProcessInfo.processInfo.environment
        environment["BATON_FENCING_TOKEN"] = String(grants[0].token)
        environment["BATON_LOCK_NODE"] = grants[0].node
        environment["BATON_LOCK_PATH"] = grants[0].path
        if grants.count > 1 {
            for (number, grant) in zip(1..., grants) {
                environment["BATON_FENCING_TOKEN_\(number)"] = String(grant.token)
                environment["BATON_LOCK_NODE_\(number)"] = grant.node
                environment["BATON_LOCK_PATH_\(number)"] = grant.path
            }
        }
        let renewer = renew ? LeaseRenewer(client: client, grants: grants, lease: Self.duration(seconds: lease!),
                                           onFailure: { supervisor.holdLost("lease renewal failed: \($0)") }) : nil
        renewer?.start()
        let outcome = supervisor.run(command, environment: environment, connection: client.socketDescriptor)
        renewer?.stop()

        if let lost = supervisor.lostReason {
            _ = lost
            printError("\(context): command ended after the hold was lost")
            throw ExitCode(ExitStatus.holdLost)
        }
        var releaseFailed = false
        do throws(BatonError) {
            for grant in grants { try client.release(grant) }
            try client.closeSession()
        } catch {
            printError("\(context): release failed: \(error)")
            releaseFailed = true
        }
        switch outcome {
        case .exited(let status):
            throw ExitCode(releaseFailed && status == 0 ? ExitStatus.failure : status)
        case .spawnFailed(let code, let message):
            printError("\(context): cannot run \(command[0]): \(message)")
            throw ExitCode(code)
        }
    }
}

/// Renews holds' leases every third of the lease on a thread of its own (PROTOCOL.md §12.5), until stopped or
/// a renewal fails (the hold is then lost or about to be: `onFailure`).
final class LeaseRenewer: @unchecked Sendable {
    private let client: BlockingClient
    private let grants: [LockGrant]
    private let lease: Duration
    private let onFailure: @Sendable (BatonError) -> Void
    private let stopped = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    init(client: BlockingClient, grants: [LockGrant], lease: Duration, onFailure: @escaping @Sendable (BatonError) -> Void) {
        self.client = client
        self.grants = grants
        self.lease = lease
        self.onFailure = onFailure
    }

    func start() {
        let interval = Double(lease.components.seconds) / 3 + Double(lease.components.attoseconds) / 3e18
        let thread = Thread { [self] in
            defer { finished.signal() }
            while stopped.wait(timeout: .now() + interval) == .timedOut {
                do throws(BatonError) {
                    for grant in grants { try client.renew(grant, lease: lease) }
                } catch {
                    onFailure(error)
                    return
                }
            }
        }
        thread.start()
    }

    /// Stops renewing; returns once no renewal is in flight (so the release that follows comes after it).
    func stop() {
        stopped.signal()
        finished.wait()
    }
}
