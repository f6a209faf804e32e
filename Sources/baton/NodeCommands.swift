import ArgumentParser
import BatonClient
import BatonProtocol
import Foundation

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exit 0 when batond answers a ping; print its name and store (e.g. batond 0.2.0 (abc1234) store=embedded).",
        discussion: """
            --json prints {"server": NAME, "store": STORE, "roundTripMicroseconds": N} (STORE: embedded, or \
            zookeeper://HOSTS/CHROOT).
            """)
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let (name, roundTrip) = try reporting("ping") { () throws(BatonError) in
            let client = try connection.connect()
            let clock = ContinuousClock()
            let start = clock.now
            try client.ping()
            let elapsed = clock.now - start
            try client.closeSession()
            return (client.serverName, elapsed)
        }
        // hello names the store only when it is not the embedded one (PROTOCOL.md §4.2).
        let parts = name.components(separatedBy: " store=")
        let server = parts[0], store = parts.count > 1 ? parts[1] : "embedded"
        if output.json {
            let micros = roundTrip.components.seconds * 1_000_000 + roundTrip.components.attoseconds / 1_000_000_000_000
            printJSON(["server": server, "store": store, "roundTripMicroseconds": micros])
        } else {
            print("\(server) store=\(store)")
        }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls", abstract: "List a node's children, sorted, one a line.",
        discussion: "--json prints {\"path\": PATH, \"children\": [NAME, ...]}.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Node path.") var path: String

    func run() throws {
        let names = try reporting("ls \(path)") { () throws(BatonError) in
            let client = try connection.connect()
            defer { try? client.closeSession() }
            return try client.children(path)
        }.sorted()
        if output.json {
            printJSON(["path": path, "children": names])
        } else {
            for name in names { print(name) }
        }
    }
}

struct StatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stat", abstract: "Print a node's metadata, one 'name: value' a line.",
        discussion: """
            Names (stable): czxid, mzxid, pzxid (transactions that created the node, last changed its data, \
            last changed its children), ctime, mtime (milliseconds since the epoch), version, cversion, \
            ephemeralOwner (session id in hex, 0x0 when not ephemeral), dataLength, numChildren, \
            kind (persistent, ephemeral or container). --json prints one object with these keys plus \
            "path" (numbers as JSON numbers, ephemeralOwner as a number).
            """)
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Node path.") var path: String

    func run() throws {
        let stat = try reporting("stat \(path)") { () throws(BatonError) in
            let client = try connection.connect()
            defer { try? client.closeSession() }
            guard let stat = try client.exists(path) else { throw .server(ReplyError(.noNode, "\(path) does not exist")) }
            return stat
        }
        if output.json {
            printJSON(Self.fields(stat).merging(["path": path]) { $1 })
        } else {
            print(Self.format(stat), terminator: "")
        }
    }

    static func fields(_ stat: Stat) -> [String: Any] {
        ["czxid": stat.createdTransaction, "mzxid": stat.modifiedTransaction, "pzxid": stat.childrenTransaction,
         "ctime": stat.createdMilliseconds, "mtime": stat.modifiedMilliseconds, "version": stat.version,
         "cversion": stat.childrenVersion, "ephemeralOwner": stat.ephemeralOwner, "dataLength": stat.dataLength,
         "numChildren": stat.childrenCount, "kind": "\(stat.kind)"]
    }

    static func format(_ stat: Stat) -> String {
        """
        czxid: \(stat.createdTransaction)
        mzxid: \(stat.modifiedTransaction)
        pzxid: \(stat.childrenTransaction)
        ctime: \(stat.createdMilliseconds)
        mtime: \(stat.modifiedMilliseconds)
        version: \(stat.version)
        cversion: \(stat.childrenVersion)
        ephemeralOwner: 0x\(String(stat.ephemeralOwner, radix: 16))
        dataLength: \(stat.dataLength)
        numChildren: \(stat.childrenCount)
        kind: \(stat.kind)

        """
    }
}

struct Get: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a node's data to stdout as is.",
        discussion: """
            --json prints {"path": PATH, "data": TEXT or null, "dataBase64": BASE64, "stat": {...as stat --json}}; \
            "data" is null when the bytes are not UTF-8.
            """)
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Node path.") var path: String

    func run() throws {
        let (data, stat) = try reporting("get \(path)") { () throws(BatonError) in
            let client = try connection.connect()
            defer { try? client.closeSession() }
            let node = try client.get(path)
            return (node.data, node.stat)
        }
        if output.json {
            let text: Any = String(validating: data, as: UTF8.self) ?? NSNull()
            printJSON(["path": path, "data": text, "dataBase64": Data(data).base64EncodedString(),
                       "stat": StatCommand.fields(stat)])
        } else {
            FileHandle.standardOutput.write(Data(data))
        }
    }
}

struct SetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set", abstract: "Replace a node's data.")
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Expected version (-1 any).") var version: Int32 = anyVersion
    @Argument(help: "Node path.") var path: String
    @Argument(help: "New data (UTF-8).") var data: String

    func run() throws {
        try reporting("set \(path)") { () throws(BatonError) in
            let client = try connection.connect()
            defer { try? client.closeSession() }
            try client.set(path, data: Array(data.utf8), version: version)
        }
    }
}

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a node and print its path.")
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Ephemeral: deleted when this command's session ends (right away).") var ephemeral = false
    @Flag(help: "Append a 10-digit sequence number to the name.") var sequential = false
    @Flag(help: "Container: deleted once its last child goes.") var container = false
    @Argument(help: "Node path.") var path: String
    @Argument(help: "Data (UTF-8).") var data: String = ""

    func validate() throws {
        if ephemeral && container { throw ValidationError("a node cannot be both ephemeral and container") }
    }

    func run() throws {
        let mode = CreateMode(kind: ephemeral ? .ephemeral : container ? .container : .persistent, sequential: sequential)
        let created = try reporting("create \(path)") { () throws(BatonError) in
            let client = try connection.connect()
            defer { try? client.closeSession() }
            return try client.create(path, data: Array(data.utf8), mode: mode)
        }
        print(created)
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete a node.")
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Expected version (-1 any).") var version: Int32 = anyVersion
    @Argument(help: "Node path.") var path: String

    func run() throws {
        try reporting("rm \(path)") { () throws(BatonError) in
            let client = try connection.connect()
            defer { try? client.closeSession() }
            try client.delete(path, version: version)
        }
    }
}

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait for one change to a node (data, existence or children), print it, exit; or, with --persistent or --recursive, print every change until stopped.",
        discussion: """
            Prints one line 'EVENT PATH', EVENT one of created, deleted, dataChanged, childrenChanged; \
            --json prints {"type": EVENT, "path": PATH}. --persistent keeps one watch on PATH (every event \
            of the node); --recursive one on PATH and its subtree (created, deleted and dataChanged of any \
            node in it, not childrenChanged). Both print one line per event, flushed, until interrupted or \
            batond goes away (exit 1). They need the embedded store (PROTOCOL.md §11.1, §16).
            """)
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Flag(help: "Keep watching the node: print every event of it.") var persistent = false
    @Flag(help: "Keep watching the node and its subtree.") var recursive = false
    @Argument(help: "Node path.") var path: String

    func validate() throws {
        if persistent && recursive { throw ValidationError("--persistent and --recursive exclude each other") }
    }

    func run() throws {
        if persistent || recursive { return try watchContinuously(mode: recursive ? .recursive : .persistent) }
        let outcome = OneShot<Result<WatchEvent, BatonError>>()
        let client = try reporting("watch \(path)") { () throws(BatonError) in
            let client = try connection.connect()
            client.onClose { error in outcome.fulfil(.failure(error)) }
            let watcher: WatchCallback = { event in outcome.fulfil(.success(event)) }
            // A data watch fires on creation, change and deletion; a child watch (only possible on an
            // existing node) on children changes.
            if try client.exists(path, watcher: watcher) != nil {
                do throws(BatonError) {
                    _ = try client.children(path, watcher: watcher)
                } catch where error.code == .noNode {
                    // Deleted between the two calls: the data watch has fired or will.
                }
            }
            return client
        }
        switch outcome.wait() {
        case .success(let event):
            printEvent(event)
            try? client.closeSession()
        case .failure(let error):
            printError("watch \(path): \(error)")
            throw ExitCode(ExitStatus.failure)
        }
    }

    private func watchContinuously(mode: WatchMode) throws {
        let ended = OneShot<BatonError>()
        let client = try reporting("watch \(path)") { () throws(BatonError) in try connection.connect() }
        client.onClose { error in ended.fulfil(error) }
        // Subscribed before the watch exists, so its first event cannot be missed.
        let events = client.events()
        let path = path, json = output.json
        Task.detached {
            for await event in events {
                guard case .watch(let type, let eventPath) = event else { continue }
                Self.printEvent(WatchEvent(type: type, path: eventPath), json: json)
            }
        }
        try reporting("watch \(path)") { () throws(BatonError) in try client.addWatch(path, mode: mode) }
        printError("watch \(path): \(ended.wait())")
        throw ExitCode(ExitStatus.failure)
    }

    private func printEvent(_ event: WatchEvent) { Self.printEvent(event, json: output.json) }

    private static func printEvent(_ event: WatchEvent, json: Bool) {
        if json {
            printJSON(["type": "\(event.type)", "path": event.path])
        } else {
            // Unbuffered, so a pipe reader sees each event as it comes.
            FileHandle.standardOutput.write(Data("\(event)\n".utf8))
        }
    }
}

/// A value set once from any thread and awaited by another (first fulfilment wins).
final class OneShot<Value: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: Value?

    func fulfil(_ newValue: Value) {
        condition.lock()
        defer { condition.unlock() }
        guard value == nil else { return }
        value = newValue
        condition.broadcast()
    }

    func wait() -> Value {
        condition.lock()
        defer { condition.unlock() }
        while value == nil { condition.wait() }
        return value!
    }
}
