import ArgumentParser
import BatonClient
import Foundation

/// `baton backup FILE`: an online backup, written by batond itself (PROTOCOL.md §10.8).
struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Have batond write a consistent snapshot of its namespace to FILE while it serves.",
        discussion: """
            batond writes FILE itself (it must be able to create it; a relative FILE is taken from the \
            current directory), so this works over the Unix socket only, on batond's host. The reply comes \
            once the file is durable. Restore with `batond --data-dir EMPTY_DIR --restore FILE`: nodes, \
            sequence numbers and the fencing-token counter come back as they were at the backup. Sessions \
            and ephemeral nodes are not restored as live: their sessions expire as after a restart. \
            Prints "FILE: N bytes at LSN L"; --json prints {"file": FILE, "bytes": N, "lsn": L}.
            """)
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Backup file to write (replaced if it exists).") var file: String

    func run() throws {
        let path = file.hasPrefix("/") ? file : FileManager.default.currentDirectoryPath + "/" + file
        let written = try reporting("backup \(path)") { () throws(BatonError) in
            let client = try connection.connect()
            defer { try? client.closeSession() }
            return try client.backup(to: path)
        }
        if output.json {
            printJSON(["file": path, "bytes": written.bytes, "lsn": written.lsn])
        } else {
            print("\(path): \(written.bytes) bytes at LSN \(written.lsn)")
        }
    }
}
