import ArgumentParser
import BatonClient
import BatonProtocol
import Foundation

struct Locks: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a lock's holders, then its waiters in queue order, one a line.",
        discussion: """
            Each line: POSITION KIND token=N session=0xHEX age=SECONDSs node=NODE client=NAME \
            (POSITION holder or waiter; KIND exclusive, shared or semaphore; age since granted or queued). \
            No output and exit 0 when nobody holds or waits, also when the lock path does not exist (an \
            unused lock's directory is removed). Exit 1 when batond cannot be asked or refuses the path.
            --json prints {"path": PATH, "entries": [{"position", "kind", "token", "sessionID", \
            "ageMilliseconds", "node", "client"}, ...]}.
            """)
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Lock path.") var lockPath: String

    func validate() throws {
        if lockPath == "/" { throw ValidationError("the root is not a lock path; name a lock, e.g. /locks/backup") }
    }

    func run() throws {
        let entries = try reporting("locks \(lockPath)") { () throws(BatonError) -> [LockEntry] in
            let client = try connection.connect()
            defer { try? client.closeSession() }
            do throws(BatonError) {
                return try client.inspect(lockPath)
            } catch where error.code == .noNode {
                return []
            }
        }
        let holders = entries.filter { $0.position == .holder }, waiters = entries.filter { $0.position == .waiter }
        if output.json {
            printJSON(["path": lockPath, "entries": (holders + waiters).map(Self.fields)])
        } else {
            for entry in holders + waiters { print(Self.format(entry)) }
        }
    }

    static func format(_ entry: LockEntry) -> String {
        let age = String(format: "%.3f", Double(entry.ageMilliseconds) / 1_000)
        return "\(entry.position) \(entry.kind) token=\(entry.token) session=0x\(String(entry.sessionID, radix: 16)) "
            + "age=\(age)s node=\(entry.node) client=\(entry.clientName)"
    }

    static func fields(_ entry: LockEntry) -> [String: Any] {
        ["position": "\(entry.position)", "kind": "\(entry.kind)", "token": entry.token, "sessionID": entry.sessionID,
         "ageMilliseconds": entry.ageMilliseconds, "node": entry.node, "client": entry.clientName]
    }
}

struct CheckToken: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-token",
        abstract: "Ask whether a fencing token is held by a current holder of a lock.",
        discussion: """
            Prints "current" and exits 0 when a holder of LOCKPATH holds TOKEN now; prints "not current" and \
            exits 3 otherwise (the hold ended, or the token was never this lock's). Exit 1 on errors. \
            --json prints {"path": PATH, "token": N, "current": BOOL} (exit status the same).
            """)
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Lock path.") var lockPath: String
    @Argument(help: "Fencing token (BATON_FENCING_TOKEN of `baton run`).") var token: UInt64

    func run() throws {
        let current = try reporting("check-token \(lockPath)") { () throws(BatonError) in
            let client = try connection.connect()
            defer { try? client.closeSession() }
            return try client.checkToken(lockPath, token: token)
        }
        if output.json {
            printJSON(["path": lockPath, "token": token, "current": current])
        } else {
            print(current ? "current" : "not current")
        }
        if !current { throw ExitCode(ExitStatus.tokenNotCurrent) }
    }
}

struct Revoke: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask the holders of a lock to give it up.",
        discussion: """
            Sends a revocation request to every hold of LOCKPATH acquired revocable (PROTOCOL.md §12.11) and \
            prints how many were asked. Each holder decides whether to release; this ends no hold by itself. \
            Exit 0 when at least one holder was asked, 3 when none holds the lock revocably, 1 on errors. \
            --json prints {"path": PATH, "holdersAsked": N}.
            """)
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Lock path.") var lockPath: String

    func run() throws {
        let asked = try reporting("revoke \(lockPath)") { () throws(BatonError) -> UInt32 in
            let client = try connection.connect()
            defer { try? client.closeSession() }
            do throws(BatonError) {
                return try client.requestRevocation(lockPath)
            } catch where error.code == .noNode {
                return 0
            }
        }
        if output.json {
            printJSON(["path": lockPath, "holdersAsked": asked])
        } else {
            print("\(asked) holder\(asked == 1 ? "" : "s") asked")
        }
        if asked == 0 { throw ExitCode(ExitStatus.nobodyAsked) }
    }
}

struct ForceRelease: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "force-release",
        abstract: "End another session's hold (or wait) of a lock: an operator's tool.",
        discussion: """
            Deletes the waiter nodes of the current holders of LOCKPATH (with --session, of every hold and wait \
            of that session there): each holder is told lockLost, a waiter's acquire fails with lockLost, and the \
            next waiter is granted with a higher fencing token (PROTOCOL.md §12.13). Needs the admin permission on \
            the path when batond has access rules (--acl). Prints how many holds and waits were ended. Exit 0 \
            when at least one was ended, 3 when there was none, 1 on errors (permissionDenied among them). \
            --json prints {"path": PATH, "ended": N}.
            """)
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Lock path.") var lockPath: String
    @Option(help: ArgumentHelp("End only this session's holds and waits (its id as `baton locks` shows it).",
                               valueName: "id"))
    var session: UInt64?

    func run() throws {
        let ended = try reporting("force-release \(lockPath)") { () throws(BatonError) -> UInt32 in
            let client = try connection.connect()
            defer { try? client.closeSession() }
            return try client.forceRelease(lockPath, session: session ?? 0)
        }
        if output.json {
            printJSON(["path": lockPath, "ended": ended])
        } else {
            print("\(ended) hold\(ended == 1 ? "" : "s") or wait\(ended == 1 ? "" : "s") ended")
        }
        if ended == 0 { throw ExitCode(ExitStatus.nothingEnded) }
    }
}
