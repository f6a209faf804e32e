import ArgumentParser
import BatonClient
import BatonProtocol
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `baton elect`: campaign, run a command while leader, resign (PROTOCOL.md §12.15). The hold is a
/// `baton run` hold (same supervisor: the command ends when leadership is lost, and leadership ends
/// only once the command has exited).
struct Elect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Campaign in an election; run a command while leader.",
        discussion: """
            Waits to lead the election at PATH (an exclusive lock on PATH), proclaims VALUE (what \
            `baton leader PATH` shows), runs COMMAND with BATON_FENCING_TOKEN, BATON_LOCK_NODE, BATON_LOCK_PATH \
            and BATON_LEADER_VALUE in its environment, and resigns when it exits, with its status. As with \
            `baton run`: not leader within --timeout: exit 75, nothing ran; leadership lost while COMMAND runs \
            (session expired, connection to batond dropped): COMMAND gets SIGTERM, SIGKILL after --grace, exit 74.
            """)

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The value to proclaim while leader (UTF-8).") var value: String
    @Option(help: ArgumentHelp("Wait at most this long to lead (0: try once). Default: forever.",
                               valueName: "SECONDS")) var timeout: Double?
    @Option(help: ArgumentHelp("After lost leadership, time between SIGTERM and SIGKILL.", valueName: "SECONDS"))
    var grace: Double = 5
    @Option(help: ArgumentHelp("Client name shown by `baton locks` and `baton leader` (default: baton elect[PID]).",
                               valueName: "NAME")) var name: String?
    @Argument(help: "Election path.") var path: String
    @Argument(parsing: .postTerminator, help: "-- COMMAND [ARGS...]") var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("missing '-- COMMAND [ARGS...]'") }
        if let timeout, !(timeout >= 0 && timeout < 4_000_000) { throw ValidationError("--timeout must be 0...4000000 seconds") }
        if !(grace >= 0 && grace < 86_400) { throw ValidationError("--grace must be 0...86400 seconds") }
    }

    func run() throws {
        let supervisor = CommandSupervisor(lockPath: path, grace: Run.duration(seconds: grace))
        supervisor.startSignalForwarding()
        let context = "elect \(path)"
        let client = try reporting(context) { () throws(BatonError) in
            try connection.connect(clientName: name ?? "baton elect[\(getpid())]")
        }
        client.onClose { _ in supervisor.holdLost("connection to batond closed") }
        client.onLockLost { lost in supervisor.holdLost("leadership lost (\(lost.reason), token \(lost.token))") }
        let grant: LockGrant
        do throws(BatonError) {
            grant = try client.campaign(path, value: Array(value.utf8), timeout: timeout.map { Run.duration(seconds: $0) })
        } catch where error.code == .lockTimeout || error.code == .lockBusy {
            printError("\(context): not leader within \(timeout ?? 0)s; command not run")
            throw ExitCode(ExitStatus.lockNotGranted)
        } catch {
            printError("\(context): \(error)")
            throw ExitCode(ExitStatus.failure)
        }
        guardRecord(client, grant)
        var environment = ProcessInfo.processInfo.environment
        environment["BATON_FENCING_TOKEN"] = String(grant.token)
        environment["BATON_LOCK_NODE"] = grant.node
        environment["BATON_LOCK_PATH"] = grant.path
        environment["BATON_LEADER_VALUE"] = value
        let outcome = supervisor.run(command, environment: environment, connection: client.socketDescriptor)
        if supervisor.lostReason != nil {
            printError("\(context): command ended after leadership was lost")
            throw ExitCode(ExitStatus.holdLost)
        }
        var resignFailed = false
        do throws(BatonError) {
            try client.resign(grant)
            try client.closeSession()
        } catch {
            printError("\(context): resign failed: \(error)")
            resignFailed = true
        }
        switch outcome {
        case .exited(let status):
            throw ExitCode(resignFailed && status == 0 ? ExitStatus.failure : status)
        case .spawnFailed(let code, let message):
            printError("\(context): cannot run \(command[0]): \(message)")
            throw ExitCode(code)
        }
    }
}

extension Elect {
    /// Proclaims again whenever the record on PATH stops naming this leader (an ex-leader's late write,
    /// PROTOCOL.md §12.15), on a thread of its own woken by a persistent watch's `dataChanged`. Over a
    /// store without persistent watches (ZooKeeper, §16) there is no guard: the value may stay hidden.
    private func guardRecord(_ client: BlockingClient, _ grant: LockGrant) {
        let wake = DispatchSemaphore(value: 0)
        let events = client.events()
        let watched = Array(path.utf8)
        Task.detached {
            for await event in events {
                if case .watch(.dataChanged, let eventPath) = event, Array(eventPath.utf8) == watched { wake.signal() }
            }
        }
        guard (try? client.addWatch(path, mode: .persistent)) != nil else { return }
        let value = Array(self.value.utf8), path = path
        let thread = Thread {
            // Once now: a write between the proclamation and the watch would not wake it.
            repeat {
                guard let leader = try? client.leader(path), leader.token == grant.token else { return }
                if leader.value != value, (try? client.proclaim(grant, value: value)) == nil { return }
            } while wake.wait(timeout: .distantFuture) == .success
        }
        thread.start()
    }
}

/// `baton leader`: who leads an election, once or as it changes.
struct LeaderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leader",
        abstract: "Print the leader of an election: its value, session and token.",
        discussion: """
            Prints 'VALUE session=0xID token=N' ('(no value yet)' between the grant and the proclamation); \
            --json prints {"value": V or null, "session": ID, "token": N, "node": NODE, "client": NAME}. \
            Nobody leads: 'none' on stdout ({"leader": null} with --json) and exit 3. \
            With --watch: one line now and one per change (another leader, a new value, none), until \
            interrupted or batond goes away (exit 1); it needs the embedded store (persistent watch).
            """)
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Flag(help: "Keep printing the leader as it changes.") var watch = false
    @Argument(help: "Election path.") var path: String

    func run() throws {
        let context = "leader \(path)"
        let client = try reporting(context) { () throws(BatonError) in try connection.connect() }
        guard watch else {
            let leader = try reporting(context) { () throws(BatonError) in try client.leader(path) }
            show(leader)
            try? client.closeSession()
            if leader == nil { throw ExitCode(ExitStatus.noLeader) }
            return
        }
        // Each event wakes the loop, which re-reads (level-triggered: events that come together give one line).
        let wake = DispatchSemaphore(value: 0)
        let closed = OneShot<BatonError>()
        client.onClose { error in
            closed.fulfil(error)
            wake.signal()
        }
        let events = client.events()
        let watched = Array(path.utf8)
        Task.detached {
            for await event in events {
                if case .watch(_, let eventPath) = event, Array(eventPath.utf8) == watched { wake.signal() }
            }
            wake.signal()
        }
        var last = try reporting(context) { () throws(BatonError) in
            try client.addWatch(path, mode: .persistent)
            return try client.leader(path)
        }
        show(last)
        while true {
            wake.wait()
            if client.isClosed { break }
            let current: ElectionLeader?
            do throws(BatonError) {
                current = try client.leader(path)
            } catch {
                printError("\(context): \(error)")
                throw ExitCode(ExitStatus.failure)
            }
            if current != last {
                show(current)
                last = current
            }
        }
        printError("\(context): \(closed.wait())")
        throw ExitCode(ExitStatus.failure)
    }

    private func show(_ leader: ElectionLeader?) {
        let line: String
        if output.json {
            let object: [String: Any] = leader.map { leader in
                ["value": leader.value.map { String(decoding: $0, as: UTF8.self) } ?? NSNull(),
                 "session": leader.sessionID, "token": leader.token, "node": leader.node, "client": leader.clientName]
            } ?? ["leader": NSNull()]
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
                ?? Data("null".utf8)
            line = String(decoding: data, as: UTF8.self)
        } else {
            line = leader.map(\.description) ?? "none"
        }
        // Unbuffered, so a pipe reader sees each change as it comes.
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
