import ArgumentParser
import BatonClient
import BatonProtocol
import Foundation

/// `baton`: the command-line client of batond.
///
/// Exit status: 0 success; 1 the request failed or batond cannot be reached (one line on stderr,
/// `baton: COMMAND PATH: ERROR`); 64 bad usage. `baton run` also exits with its command's status
/// (128+N when the command was killed by signal N), 75 when the lock was not granted in time
/// (the command never ran), and 74 when the hold was lost while the command ran (see `run --help`).
@main
struct Baton: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baton",
        abstract: "Client of batond: fair, crash-safe locks and a ZooKeeper-style namespace.",
        discussion: """
            Without --socket or --tcp, baton connects to $BATON_SOCKET, else $XDG_RUNTIME_DIR/baton.sock, \
            else /tmp/baton-$UID.sock (the same rule as batond).
            Exit status: 0 success; 1 request failed or batond unreachable; 64 usage; \
            run: the command's status, 75 lock not granted in time, 74 hold lost while the command ran.
            """,
        subcommands: [Ping.self, List.self, StatCommand.self, Get.self, SetCommand.self, Create.self, Remove.self,
                      Watch.self, Run.self, Locks.self])
}

/// Where batond is: shared by every subcommand.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Unix socket of batond.", valueName: "PATH"))
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("TCP endpoint of batond.", valueName: "HOST:PORT"))
    var tcp: String?

    @Option(name: .long, help: ArgumentHelp(
        "File holding batond's TCP token (default $BATON_TCP_TOKEN_FILE); needed with --tcp.", valueName: "FILE"))
    var tcpTokenFile: String?

    func validate() throws {
        if socket != nil && tcp != nil { throw ValidationError("give --socket or --tcp, not both") }
        if let tcp, Endpoint.parseTCP(tcp) == nil { throw ValidationError("--tcp wants HOST:PORT, got '\(tcp)'") }
    }

    var endpoint: Endpoint {
        if let socket { return .unix(path: socket) }
        if let tcp, let endpoint = Endpoint.parseTCP(tcp) { return endpoint }
        return BatonClient.defaultEndpoint()
    }

    func connect(clientName: String = "baton") throws(BatonError) -> BlockingClient {
        try BlockingClient.connect(to: endpoint, options: try clientOptions(clientName: clientName))
    }

    func clientOptions(clientName: String) throws(BatonError) -> ClientOptions {
        var options = ClientOptions(clientName: clientName)
        if tcp != nil, let path = tcpTokenFile ?? ProcessInfo.processInfo.environment[TCPToken.fileEnvironmentVariable] {
            options.tcpAuthenticationToken = try TCPToken.read(fromFile: path)
        }
        return options
    }
}

/// Exit statuses that are part of the CLI's contract.
enum ExitStatus {
    static let failure: Int32 = 1
    static let holdLost: Int32 = 74
    static let lockNotGranted: Int32 = 75
}

/// Writes one line to stderr.
func printError(_ line: String) {
    FileHandle.standardError.write(Data("baton: \(line)\n".utf8))
}

/// Runs `body`; a `BatonError` becomes one line on stderr (`baton: CONTEXT: ERROR`) and exit status 1.
func reporting<Value>(_ context: String, _ body: () throws(BatonError) -> Value) throws(ExitCode) -> Value {
    do {
        return try body()
    } catch {
        printError("\(context): \(error)")
        throw ExitCode(ExitStatus.failure)
    }
}

func parseVersion(_ text: String) -> Int32? { Int32(text) }
