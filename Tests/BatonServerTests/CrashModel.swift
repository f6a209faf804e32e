import BatonProtocol

/// What the crash test knows about one persistent node: its data and version.
struct CrashNodeValue: Equatable, CustomStringConvertible {
    var data: [UInt8]
    var version: Int32

    var description: String {
        let text = String(decoding: data.prefix(48), as: UTF8.self)
        return "v\(version) \"\(text)\"\(data.count > 48 ? "…(\(data.count) bytes)" : "")"
    }
}

/// One namespace change a crash-test client asks for, alone or inside a multi. Sequential creates
/// always go under the client's sequence parent with the name prefix `item-`.
enum CrashChange: Equatable {
    case create(path: String, data: [UInt8])
    case createSequential(parent: String, data: [UInt8])
    case set(path: String, data: [UInt8], expectedVersion: Int32)
    case delete(path: String, expectedVersion: Int32)
    case check(path: String, expectedVersion: Int32)

    static let sequentialPrefix = "item-"

    var multiOperation: MultiOperation {
        switch self {
        case .create(let path, let data): .create(path: path, data: data, mode: .persistent)
        case .createSequential(let parent, let data):
            .create(path: parent + "/" + CrashChange.sequentialPrefix, data: data, mode: .persistentSequential)
        case .set(let path, let data, let expectedVersion): .set(path: path, data: data, expectedVersion: expectedVersion)
        case .delete(let path, let expectedVersion): .delete(path: path, expectedVersion: expectedVersion)
        case .check(let path, let expectedVersion): .check(path: path, expectedVersion: expectedVersion)
        }
    }

    /// The request when sent on its own (a check alone is never sent).
    var request: Request {
        switch self {
        case .create(let path, let data): .create(path: path, data: data, mode: .persistent)
        case .createSequential(let parent, let data):
            .create(path: parent + "/" + CrashChange.sequentialPrefix, data: data, mode: .persistentSequential)
        case .set(let path, let data, let expectedVersion): .set(path: path, data: data, expectedVersion: expectedVersion)
        case .delete(let path, let expectedVersion): .delete(path: path, expectedVersion: expectedVersion)
        case .check(let path, let expectedVersion): .check(path: path, expectedVersion: expectedVersion)
        }
    }
}

/// A write a client sends: one change, or a multi (all or none).
enum CrashOperation: Equatable, CustomStringConvertible {
    case single(CrashChange)
    case multi([CrashChange])

    var changes: [CrashChange] {
        switch self {
        case .single(let change): [change]
        case .multi(let changes): changes
        }
    }

    var request: Request {
        switch self {
        case .single(let change): change.request
        case .multi(let changes): .multi(changes.map(\.multiOperation))
        }
    }

    var description: String {
        func describe(_ change: CrashChange) -> String {
            switch change {
            case .create(let path, _): "create \(path)"
            case .createSequential(let parent, _): "createSequential \(parent)/\(CrashChange.sequentialPrefix)"
            case .set(let path, _, let version): "set \(path) @\(version)"
            case .delete(let path, let version): "delete \(path) @\(version)"
            case .check(let path, let version): "check \(path) @\(version)"
            }
        }
        switch self {
        case .single(let change): return describe(change)
        case .multi(let changes): return "multi [" + changes.map(describe).joined(separator: ", ") + "]"
        }
    }
}

/// The state of one client's private subtree (path to value) and the rules the daemon applies to it.
/// A client is the only writer of its subtree, so the outcome of each of its operations is known
/// exactly in advance.
struct CrashTree: Equatable {
    var nodes: [String: CrashNodeValue]

    /// Applies `operation` all or none, as the daemon must. `sequentialPath(parent, index)` names the
    /// node a sequential create made (from the reply, or found on disk after a restart); nil means it
    /// made none. Returns the error code of the first failing change (nothing applied) or nil.
    @discardableResult
    mutating func apply(_ operation: CrashOperation, sequentialPath: (_ parent: String, _ index: Int) -> String?) -> ErrorCode? {
        var scratch = self
        for (index, change) in operation.changes.enumerated() {
            if let code = scratch.step(change, createdPath: { sequentialPath($0, index) }) { return code }
        }
        self = scratch
        return nil
    }

    /// What `operation` must answer: nil for success, else the code of its first failing change.
    func predictedFailure(of operation: CrashOperation) -> ErrorCode? {
        var scratch = self
        var counter = 0
        return scratch.apply(operation) { parent, _ in
            counter += 1
            return parent + "/" + CrashChange.sequentialPrefix + "predicted-\(counter)"
        }
    }

    private mutating func step(_ change: CrashChange, createdPath: (String) -> String?) -> ErrorCode? {
        switch change {
        case .create(let path, let data):
            guard nodes[path] == nil else { return .nodeExists }
            nodes[path] = CrashNodeValue(data: data, version: 0)
        case .createSequential(let parent, let data):
            guard nodes[parent] != nil else { return .noNode }
            guard let path = createdPath(parent), nodes[path] == nil else { return .noNode }
            nodes[path] = CrashNodeValue(data: data, version: 0)
        case .set(let path, let data, let expectedVersion):
            guard let node = nodes[path] else { return .noNode }
            guard expectedVersion == anyVersion || expectedVersion == node.version else { return .badVersion }
            nodes[path] = CrashNodeValue(data: data, version: node.version + 1)
        case .delete(let path, let expectedVersion):
            guard let node = nodes[path] else { return .noNode }
            guard expectedVersion == anyVersion || expectedVersion == node.version else { return .badVersion }
            guard !nodes.keys.contains(where: { $0.hasPrefix(path + "/") }) else { return .notEmpty }
            nodes[path] = nil
        case .check(let path, let expectedVersion):
            guard let node = nodes[path] else { return .noNode }
            guard expectedVersion == anyVersion || expectedVersion == node.version else { return .badVersion }
        }
        return nil
    }

    /// The lines that differ, for a failure message.
    func difference(from other: CrashTree) -> String {
        let paths = Set(nodes.keys).union(other.nodes.keys).sorted()
        return paths.compactMap { path -> String? in
            let mine = nodes[path], theirs = other.nodes[path]
            guard mine != theirs else { return nil }
            return "  \(path): expected \(theirs.map(\.description) ?? "absent"), found \(mine.map(\.description) ?? "absent")"
        }.joined(separator: "\n")
    }
}

/// The sequence number of a sequential node's name (the last 10 characters), or nil.
func crashSequenceNumber(of path: String) -> UInt64? {
    let name = path.split(separator: "/").last.map(String.init) ?? ""
    guard name.utf8.count >= 10 else { return nil }
    let digits = name.suffix(10)
    guard digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
    return UInt64(digits)
}

