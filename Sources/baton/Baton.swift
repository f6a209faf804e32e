import ArgumentParser
import BatonClient
import BatonProtocol
import BatonRevision
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
            else /tmp/baton-$UID.sock (the same rule as batond). With --tcp and --tls-ca (or $BATON_TLS_CA) \
            baton speaks TLS and checks batond's certificate. --socket, --tcp, --tcp-token-file, the --tls \
            options and --json may come before or after the subcommand.
            Exit status: 0 success; 1 request failed or batond unreachable; 64 usage; \
            check-token: 3 token not current; \
            run, elect: the command's status, 75 lock (leadership) not granted in time, 74 hold lost while the command ran; \
            leader: 3 nobody leads.
            """,
        version: BatonRevision.version,
        subcommands: [Ping.self, List.self, StatCommand.self, Get.self, SetCommand.self, Create.self, Remove.self,
                      Watch.self, Run.self, Locks.self, CheckToken.self, Elect.self, LeaderCommand.self, Revoke.self, ForceRelease.self, Backup.self, GuardedExec.self])

    static func main() {
        main(GlobalOptions.hoisted(Array(CommandLine.arguments.dropFirst()),
                                   subcommands: Set(configuration.subcommands.map { $0._commandName })))
    }
}

/// Options every subcommand takes, accepted before the subcommand too: `baton --socket S ping` is
/// rewritten to `baton ping --socket S` before parsing (ArgumentParser gives options to one command only).
enum GlobalOptions {
    static let withValue: Set<String> = ["--socket", "--tcp", "--tcp-token-file", "--tls-ca", "--tls-cert", "--tls-key",
                                         "--tls-server-name"]
    static let flags: Set<String> = ["--json"]

    static func hoisted(_ arguments: [String], subcommands: Set<String>) -> [String] {
        var global: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if subcommands.contains(argument) {
                return [argument] + global + arguments[(index + 1)...]
            }
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            if withValue.contains(name) {
                if argument.contains("=") {
                    global.append(argument)
                    index += 1
                } else if index + 1 < arguments.count {
                    global += [argument, arguments[index + 1]]
                    index += 2
                } else {
                    return arguments  // a missing value: let the parser say so
                }
            } else if flags.contains(argument) {
                global.append(argument)
                index += 1
            } else {
                return arguments  // --help, --version, or a mistake: the parser answers
            }
        }
        return arguments
    }
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

    @Option(name: .customLong("tls-ca"), help: ArgumentHelp(
        "TLS with --tcp: CA certificates (PEM) batond's certificate must chain to (default $BATON_TLS_CA).",
        discussion: "Without it (and $BATON_TLS_CA), --tcp speaks plain TCP.", valueName: "FILE"))
    var tlsCAFile: String?

    @Option(name: .customLong("tls-cert"), help: ArgumentHelp(
        "Client certificate (PEM) for batond's mutual TLS (default $BATON_TLS_CERT).", valueName: "FILE"))
    var tlsCertificateFile: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp(
        "Private key (PEM) of --tls-cert (default $BATON_TLS_KEY).", valueName: "FILE"))
    var tlsKeyFile: String?

    @Option(name: .customLong("tls-server-name"), help: ArgumentHelp(
        "Name batond's certificate must carry, if not the --tcp host (default $BATON_TLS_SERVER_NAME).", valueName: "NAME"))
    var tlsServerName: String?

    /// Environment variables for the TLS options, read when the option is not given.
    static let tlsEnvironment = (ca: "BATON_TLS_CA", certificate: "BATON_TLS_CERT", key: "BATON_TLS_KEY",
                                 serverName: "BATON_TLS_SERVER_NAME")

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
        let options = try clientOptions(clientName: clientName)
        do throws(BatonError) {
            return try BlockingClient.connect(to: endpoint, options: options)
        } catch {
            throw ConnectionOptions.explained(error, endpoint: endpoint, hasToken: options.tcpAuthenticationToken != nil,
                                              usesTLS: options.tls != nil)
        }
    }

    func clientOptions(clientName: String) throws(BatonError) -> ClientOptions {
        var options = ClientOptions(clientName: clientName)
        if tcp != nil, let path = tcpTokenFile ?? ProcessInfo.processInfo.environment[TCPToken.fileEnvironmentVariable] {
            options.tcpAuthenticationToken = try TCPToken.read(fromFile: path)
        }
        if tcp != nil { options.tls = try tlsOptions(environment: ProcessInfo.processInfo.environment) }
        return options
    }

    /// TLS when a CA is given (option or environment); the rest needs it.
    func tlsOptions(environment: [String: String]) throws(BatonError) -> TLSOptions? {
        let names = ConnectionOptions.tlsEnvironment
        let certificate = tlsCertificateFile ?? environment[names.certificate]
        let key = tlsKeyFile ?? environment[names.key]
        let serverName = tlsServerName ?? environment[names.serverName]
        guard let caFile = tlsCAFile ?? environment[names.ca] else {
            if certificate != nil || key != nil || serverName != nil {
                throw .invalidArgument("--tls-cert, --tls-key and --tls-server-name need --tls-ca FILE (or $\(names.ca))")
            }
            return nil
        }
        guard (certificate == nil) == (key == nil) else { throw .invalidArgument("--tls-cert and --tls-key go together") }
        return TLSOptions(caFile: caFile, serverName: serverName, certificateFile: certificate, keyFile: key)
    }

    /// A failed connect, with what to do about it.
    static func explained(_ error: BatonError, endpoint: Endpoint, hasToken: Bool, usesTLS: Bool = false) -> BatonError {
        switch (error, endpoint) {
        case (.connectFailed(let detail), .unix(let path)):
            let directory = (path as NSString).deletingLastPathComponent
            var isDirectory: ObjCBool = false
            if !directory.isEmpty && !(FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) && isDirectory.boolValue) {
                return .connectFailed("\(path): directory \(directory) does not exist; "
                    + "give batond's socket with --socket PATH or $BATON_SOCKET")
            }
            return .connectFailed("\(detail); is batond running? Start it (`batond`, or `swift run batond` in the "
                + "checkout), or give its socket with --socket PATH or $BATON_SOCKET")
        case (.connectFailed(let detail), .tcp) where detail.hasPrefix("TLS"):
            return error
        case (.connectionClosed, .tcp) where !usesTLS, (.protocolViolation, .tcp) where !usesTLS:
            return .connectFailed("\(error); if batond serves TLS there, give its CA with --tls-ca FILE or $\(tlsEnvironment.ca)")
        case (.connectFailed(let detail), .tcp):
            return .connectFailed("\(detail); is batond listening there (batond --listen HOST:PORT)?")
        case (.server(let reply), .tcp) where !hasToken && (reply.code == .notAuthorized || reply.code == .sessionRequired):
            return .server(ReplyError(reply.code, "TCP needs batond's token: --tcp-token-file FILE or $\(TCPToken.fileEnvironmentVariable)"))
        default:
            return error
        }
    }
}

/// `--json`: one JSON document on stdout instead of text (field names are stable; `baton --help` per command).
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print JSON (stable field names) instead of text.") var json = false
}

/// Writes one JSON value and a newline to stdout. Keys are sorted so the output is stable.
func printJSON(_ value: Any) {
    let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("null".utf8)
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

/// Exit statuses that are part of the CLI's contract.
enum ExitStatus {
    static let failure: Int32 = 1
    static let tokenNotCurrent: Int32 = 3
    /// `revoke`: nobody holds the lock revocably.
    static let nobodyAsked: Int32 = 3
    /// `force-release`: nobody held (or waited for) the lock as asked.
    static let nothingEnded: Int32 = 3
    /// `leader`: nobody leads the election.
    static let noLeader: Int32 = 3
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
