import BatonServer
import TOMLKit
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `batond --config FILE`: a TOML file whose keys are batond's long flags without the leading
/// `--` (`data-dir = "/var/lib/baton"`, `fsync = "always"`, `in-memory = true`). The file becomes
/// arguments placed before the command line's, so a flag given on the command line overrides the
/// file; a flag added to batond has its key at once. Documented key by key in deploy/batond.toml.
enum ConfigurationFile {
    static let flag = "--config"
    /// A configuration file larger than this is refused (it is a page of settings).
    static let bytesMax = 1_048_576

    /// The command line with the file's settings put in front (and `--config` kept, for the
    /// parser to accept); the command line itself when there is no `--config`.
    static func expand(_ arguments: [String], validate: ([String]) throws -> Void) throws(ServerError) -> [String] {
        guard let path = configPath(arguments) else { return arguments }
        let fromFile = try self.arguments(fromFile: path)
        do {
            try validate(fromFile)
        } catch {
            throw ServerError("\(path): \(error) (keys are batond's long flags without the leading --; batond --help lists them)")
        }
        return fromFile + arguments
    }

    /// The value of the last `--config` on the command line (before a `--`).
    static func configPath(_ arguments: [String]) -> String? {
        var path: String?
        var index = 0
        while index < arguments.count, arguments[index] != "--" {
            let argument = arguments[index]
            if argument == flag, index + 1 < arguments.count {
                path = arguments[index + 1]
                index += 1
            } else if argument.hasPrefix(flag + "=") {
                path = String(argument.dropFirst(flag.count + 1))
            }
            index += 1
        }
        return path
    }

    /// The file's settings as arguments: a string or integer `key = value` is `--key=value`, `true`
    /// is `--key`, `false` is nothing (the flag's default), an array repeats its key.
    static func arguments(fromFile path: String) throws(ServerError) -> [String] {
        let text = try readText(path)
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch {
            throw ServerError("\(path) is not valid TOML: \(error)")
        }
        var result: [String] = []
        for (key, value) in table.sorted(by: { $0.0 < $1.0 }) {
            guard key != "config" else { throw ServerError("\(path): a configuration file cannot name another (key config)") }
            guard key.first?.isLetter == true, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                throw ServerError("\(path): key \(key) is not a batond flag name (letters, digits and -)")
            }
            result += try arguments(key: key, value: value, path: path)
        }
        return result
    }

    private static func arguments(key: String, value: TOMLValueConvertible, path: String) throws(ServerError) -> [String] {
        switch value.type {
        case .string: return ["--\(key)=\(value.string!)"]
        case .int: return ["--\(key)=\(value.int!)"]
        case .bool: return value.bool! ? ["--\(key)"] : []
        case .array:
            var result: [String] = []
            for element in value.array! {
                guard element.type == .string || element.type == .int else {
                    throw ServerError("\(path): \(key) holds an array of something other than strings or integers")
                }
                result += try arguments(key: key, value: element, path: path)
            }
            return result
        case .table:
            throw ServerError("\(path): [\(key)] is a table; batond's settings are top-level keys")
        default:
            throw ServerError("\(path): \(key) must be a string, an integer or a boolean, not a \(value.type)")
        }
    }

    private static func readText(_ path: String) throws(ServerError) -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ServerError("cannot read the configuration file \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw ServerError("cannot read the configuration file \(path): \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            bytes += buffer[0..<count]
            guard bytes.count <= bytesMax else { throw ServerError("the configuration file \(path) is larger than \(bytesMax) bytes") }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw ServerError("\(path) is not UTF-8 text") }
        return text
    }
}
