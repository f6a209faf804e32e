/// A failure of the benchmark driver itself (a peer refused, a socket broke): the run stops with its text.
public struct BenchError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

#if canImport(Glibc)
import Glibc
#endif

func systemError(_ what: String, _ code: Int32 = errno) -> BenchError {
    BenchError("\(what): \(String(cString: strerror(code)))")
}
