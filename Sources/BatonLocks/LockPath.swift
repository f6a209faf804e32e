/// Path helpers of the recipe (the namespace validates paths fully; these only split them).
enum LockPath {
    /// A lock path the recipe accepts: absolute, no empty component, not the root, no trailing slash.
    static func isValid(_ path: String) -> Bool {
        let bytes = Array(path.utf8)
        guard bytes.count >= 2, bytes[0] == UInt8(ascii: "/"), bytes.last != UInt8(ascii: "/") else { return false }
        var previousWasSlash = false
        for byte in bytes {
            let isSlash = byte == UInt8(ascii: "/")
            if isSlash && previousWasSlash { return false }
            if byte == 0 { return false }
            previousWasSlash = isSlash
        }
        return true
    }

    /// Parent of an absolute path ("/" for a top-level node).
    static func parent(of path: String) -> String {
        guard let slash = lastSlashOffset(path), slash != 0 else { return "/" }
        return String(path.utf8.prefix(slash))!
    }

    /// Last component of an absolute path.
    static func name(of path: String) -> String {
        guard let slash = lastSlashOffset(path) else { return path }
        return String(path.utf8.dropFirst(slash + 1))!
    }

    /// Byte offset of the last "/", scanning contiguous UTF-8 (runs several times per lock request).
    private static func lastSlashOffset(_ path: String) -> Int? {
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
