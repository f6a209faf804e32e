import BatonProtocol

/// The one place where node paths are checked and split. Rules (strict, no normalisation):
/// absolute; "/" is the root; no trailing slash except the root; no empty, "." or ".." segments;
/// no NUL or other ASCII control characters; at most `limits.pathBytesMax` UTF-8 bytes.
public enum NamespacePath {
    public static let root = "/"

    /// Width of the sequence suffix of sequential nodes (ZooKeeper's `%010d`).
    public static let sequenceDigits = 10
    /// Largest counter that still fits the suffix width.
    public static let sequenceMax: UInt64 = 9_999_999_999

    /// Throws `invalidPath` or `pathTooLong`.
    public static func validate(_ path: String, limits: Limits) throws(ReplyError) {
        let utf8 = path.utf8
        guard utf8.count <= limits.pathBytesMax else {
            throw ReplyError(.pathTooLong, "path is \(utf8.count) bytes, at most \(limits.pathBytesMax)")
        }
        guard utf8.first == UInt8(ascii: "/") else { throw ReplyError(.invalidPath, "path must start with /") }
        if utf8.count == 1 { return }
        guard utf8.last != UInt8(ascii: "/") else { throw ReplyError(.invalidPath, "path must not end with /") }
        // Walk the segments once: each starts after a slash and must be a real name.
        var segmentBytes = 0
        var segmentDots = 0
        for byte in utf8.dropFirst() {
            if byte == UInt8(ascii: "/") {
                try checkSegment(bytes: segmentBytes, dots: segmentDots)
                segmentBytes = 0
                segmentDots = 0
                continue
            }
            guard byte >= 0x20 && byte != 0x7F else {
                throw ReplyError(.invalidPath, "path contains a control character")
            }
            segmentBytes += 1
            if byte == UInt8(ascii: ".") { segmentDots += 1 }
        }
        try checkSegment(bytes: segmentBytes, dots: segmentDots)
    }

    private static func checkSegment(bytes: Int, dots: Int) throws(ReplyError) {
        guard bytes > 0 else { throw ReplyError(.invalidPath, "path has an empty segment") }
        guard !(dots == bytes && bytes <= 2) else { throw ReplyError(.invalidPath, "path has a . or .. segment") }
    }

    /// The parent of a valid non-root path.
    public static func parent(of path: String) -> String {
        precondition(path != root, "the root has no parent")
        let utf8 = path.utf8
        let slash = utf8.lastIndex(of: UInt8(ascii: "/"))!
        if slash == utf8.startIndex { return root }
        return String(path[..<slash])
    }

    /// The last segment of a valid non-root path.
    public static func name(of path: String) -> String {
        let utf8 = path.utf8
        let slash = utf8.lastIndex(of: UInt8(ascii: "/"))!
        return String(path[utf8.index(after: slash)...])
    }

    public static func child(_ name: String, of parent: String) -> String {
        parent == root ? root + name : parent + "/" + name
    }

    /// The one place sequence suffixes are made: the counter, zero-padded to 10 digits.
    public static func sequenceSuffix(_ counter: UInt64) -> String {
        precondition(counter <= sequenceMax)
        let digits = String(counter)
        return String(repeating: "0", count: sequenceDigits - digits.count) + digits
    }
}
