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
            No output when nobody holds or waits.
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Lock path.") var lockPath: String

    func run() throws {
        let entries = try reporting("locks \(lockPath)") { () throws(BatonError) in
            let client = try connection.connect()
            defer { try? client.closeSession() }
            return try client.inspect(lockPath)
        }
        let holders = entries.filter { $0.position == .holder }, waiters = entries.filter { $0.position == .waiter }
        for entry in holders + waiters { print(Self.format(entry)) }
    }

    static func format(_ entry: LockEntry) -> String {
        let age = String(format: "%.3f", Double(entry.ageMilliseconds) / 1_000)
        return "\(entry.position) \(entry.kind) token=\(entry.token) session=0x\(String(entry.sessionID, radix: 16)) "
            + "age=\(age)s node=\(entry.node) client=\(entry.clientName)"
    }
}
