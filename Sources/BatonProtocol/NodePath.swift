/// Splitting of absolute node paths (`/locks/orders`), shared by the namespace and the lock recipe.
/// It only splits: `NamespacePath.validate` is where a path's rules are checked.
public enum NodePath {
    public static let root = "/"

    /// The parent of an absolute path; the root for a top-level node.
    public static func parent(of path: String) -> String {
        guard let slash = lastSlashOffset(path), slash != 0 else { return root }
        return String(path.utf8.prefix(slash))!
    }

    /// The last segment of an absolute path.
    public static func name(of path: String) -> String {
        guard let slash = lastSlashOffset(path) else { return path }
        return String(path.utf8.dropFirst(slash + 1))!
    }

    public static func child(_ name: String, of parent: String) -> String {
        parent == root ? root + name : parent + "/" + name
    }

    /// Byte offset of the last "/" (a scan of contiguous UTF-8; the generic `lastIndex(of:)` on a
    /// UTF-8 view is not specialized across modules and costs thousands of instructions per call,
    /// and this runs several times per lock request).
    static func lastSlashOffset(_ path: String) -> Int? {
        var path = path
        return path.withUTF8 { bytes in
            var index = bytes.count - 1
            while index >= 0 {
                if bytes[index] == UInt8(ascii: "/") { return index }
                index -= 1
            }
            return nil
        }
    }
}
