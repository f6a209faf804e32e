/// Splitting of absolute node paths (`/locks/orders`), shared by the namespace and the lock recipe.
/// It only splits: `NamespacePath.validate` is where a path's rules are checked.
public enum NodePath {
    public static let root = "/"

    /// The parent of an absolute path; the root for a top-level node.
    public static func parent(of path: String) -> String {
        // One pass over the bytes, which are copied once (several times per lock request).
        var path = path
        return path.withUTF8 { bytes in
            guard let slash = lastSlash(in: bytes), slash != 0 else { return root }
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[..<slash]), as: UTF8.self)
        }
    }

    /// The last segment of an absolute path.
    public static func name(of path: String) -> String {
        var whole = path
        return whole.withUTF8 { bytes in
            guard let slash = lastSlash(in: bytes) else { return path }
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[(slash + 1)...]), as: UTF8.self)
        }
    }

    public static func child(_ name: String, of parent: String) -> String {
        parent == root ? root + name : parent + "/" + name
    }

    /// Byte offset of the last "/" (a scan of contiguous UTF-8; the generic `lastIndex(of:)` on a
    /// UTF-8 view is not specialized across modules and costs thousands of instructions per call,
    /// and this runs several times per lock request).
    private static func lastSlash(in bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        var index = bytes.count - 1
        while index >= 0 {
            if bytes[index] == UInt8(ascii: "/") { return index }
            index -= 1
        }
        return nil
    }
}
