import BatonProtocol

/// The one place where node paths are checked (`NodePath` splits them). Rules (strict, no normalisation):
/// absolute; "/" is the root; no trailing slash except the root; no empty, "." or ".." segments;
/// no NUL or other ASCII control characters; at most `limits.pathBytesMax` UTF-8 bytes.
public enum NamespacePath {
    public static let root = NodePath.root

    /// Width of the sequence suffix of sequential nodes (ZooKeeper's `%010d`).
    public static let sequenceDigits = 10
    /// Largest counter that still fits the suffix width.
    public static let sequenceMax: UInt64 = 9_999_999_999

    /// Throws `invalidPath` or `pathTooLong`.
    /// `sequential`: checks `path` as it will be once the sequence suffix is appended (as in ZooKeeper,
    /// "/dir/" is then a valid prefix of a child of "/dir"), without making that string.
    public static func validate(_ path: String, sequential: Bool = false, limits: Limits) throws(ReplyError) {
        // One pass over contiguous UTF-8 (every request's path comes through here).
        var path = path
        let problem = path.withUTF8 { bytes in
            check(bytes, suffixBytes: sequential ? sequenceDigits : 0, pathBytesMax: limits.pathBytesMax)
        }
        if let problem { throw problem }
    }

    /// For a path its maker has proven valid but for its length: the lock layer's waiter paths, a
    /// waiter name under a lock path that `validate` passed (`Engine.lockRefusal`, `WaiterName.createPath`),
    /// and the paths the namespace handed back for them. Only the length is checked (a waiter's name may
    /// take a long lock path past the limit), in O(1); debug builds check the rest.
    public static func validateLength(ofProven path: String, sequential: Bool = false, limits: Limits) throws(ReplyError) {
        let suffixBytes = sequential ? sequenceDigits : 0
        assert({
            var path = path
            return path.withUTF8 { check($0, suffixBytes: suffixBytes, pathBytesMax: .max) } == nil
        }(), "\(path) is not a valid path")
        let bytes = path.utf8.count
        if let problem = lengthProblem(bytes: bytes, suffixBytes: suffixBytes, pathBytesMax: limits.pathBytesMax) { throw problem }
    }

    private static func lengthProblem(bytes: Int, suffixBytes: Int, pathBytesMax: Int) -> ReplyError? {
        guard bytes + suffixBytes <= pathBytesMax else {
            return ReplyError(.pathTooLong, "path is \(bytes + suffixBytes) bytes, at most \(pathBytesMax)")
        }
        return nil
    }

    /// `suffixBytes`: digits that will follow `bytes` (they end the last segment and make it a name).
    private static func check(_ bytes: UnsafeBufferPointer<UInt8>, suffixBytes: Int, pathBytesMax: Int) -> ReplyError? {
        if let problem = lengthProblem(bytes: bytes.count, suffixBytes: suffixBytes, pathBytesMax: pathBytesMax) { return problem }
        guard bytes.first == UInt8(ascii: "/") else { return ReplyError(.invalidPath, "path must start with /") }
        if bytes.count == 1 { return nil }
        guard suffixBytes > 0 || bytes.last != UInt8(ascii: "/") else { return ReplyError(.invalidPath, "path must not end with /") }
        // Walk the segments once: each starts after a slash and must be a real name. Every byte that
        // needs a second look (slash, dot, control) is below "0" or DEL: one comparison for the others.
        var segmentStart = 1
        for index in 1..<bytes.count {
            let byte = bytes[index]
            guard byte < 0x30 || byte == 0x7F else { continue }
            if byte == UInt8(ascii: "/") {
                if let problem = checkSegment(bytes, segmentStart, index) { return problem }
                segmentStart = index + 1
            } else if byte < 0x20 || byte == 0x7F {
                return ReplyError(.invalidPath, "path contains a control character")
            }
        }
        return suffixBytes > 0 ? nil : checkSegment(bytes, segmentStart, bytes.count)
    }

    /// The segment `bytes[start..<end]`: not empty, not "." or "..".
    private static func checkSegment(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> ReplyError? {
        guard end > start else { return ReplyError(.invalidPath, "path has an empty segment") }
        guard end - start > 2 || bytes[start..<end].contains(where: { $0 != UInt8(ascii: ".") }) else {
            return ReplyError(.invalidPath, "path has a . or .. segment")
        }
        return nil
    }

    /// The parent of a valid non-root path.
    public static func parent(of path: String) -> String {
        precondition(path != root, "the root has no parent")
        return NodePath.parent(of: path)
    }

    /// The last segment of a valid non-root path.
    public static func name(of path: String) -> String { NodePath.name(of: path) }

    public static func child(_ name: String, of parent: String) -> String { NodePath.child(name, of: parent) }

    /// The counter, zero-padded to 10 digits.
    public static func sequenceSuffix(_ counter: UInt64) -> String { sequential(prefix: "", counter) }

    /// The one place sequence suffixes are made: `prefix` and the counter, zero-padded to 10 digits,
    /// in one allocation (`prefix + suffix` made the suffix and then grew a copy of the prefix:
    /// ~0.4 % of a contended grant).
    public static func sequential(prefix: String, _ counter: UInt64) -> String {
        precondition(counter <= sequenceMax)
        var prefix = prefix
        return prefix.withUTF8 { prefixBytes in
            String(unsafeUninitializedCapacity: prefixBytes.count + sequenceDigits) { buffer in
                _ = buffer.initialize(fromContentsOf: prefixBytes)
                var value = counter
                for index in stride(from: prefixBytes.count + sequenceDigits - 1, through: prefixBytes.count, by: -1) {
                    buffer[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value % 10)
                    value /= 10
                }
                return prefixBytes.count + sequenceDigits
            }
        }
    }
}
