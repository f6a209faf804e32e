/// Path helpers of the recipe (the namespace validates paths fully; these only split them).
enum LockPath {
    /// A lock path the recipe accepts: absolute, no empty component, not the root, no trailing slash.
    static func isValid(_ path: String) -> Bool {
        // Over the string's own UTF-8 (no copy: this runs on every acquire).
        var path = path
        return path.withUTF8 { bytes in
            guard bytes.count >= 2, bytes[0] == UInt8(ascii: "/"), bytes[bytes.count - 1] != UInt8(ascii: "/") else { return false }
            var previousWasSlash = false
            for byte in bytes {
                let isSlash = byte == UInt8(ascii: "/")
                if isSlash && previousWasSlash { return false }
                if byte == 0 { return false }
                previousWasSlash = isSlash
            }
            return true
        }
    }
}
