#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the store stopped accepting commits, until `retry()` succeeds.
public struct StoreFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var operation: String
    public var message: String
    /// The errno of the failed call, if it was one.
    public var errno: Int32?

    init(operation: String, error: any Error) {
        self.operation = operation
        message = "\(error)"
        if case .io(_, _, let code) = error as? StoreError { errno = code } else { errno = nil }
    }

    /// The device or the user's quota is full: freeing space fixes it.
    public var isOutOfSpace: Bool { errno == ENOSPC || errno == EDQUOT }

    public var description: String { "\(operation): \(message)" }
}

extension Store {
    /// Writes both MARKS copies, one after the other, each atomically (temporary file, fsync,
    /// rename, directory fsync): at every instant at least one complete copy is on disk, and a
    /// damaged copy leaves the other.
    func writeMarks(_ new: MarksFile) throws {
        var next = new
        next.generation = max(marks.generation, new.generation) + 1
        let bytes = StoreFormat.encodeMarks(next)
        for name in StoreFormat.marksFileNames {
            let finalPath = FileSystem.join(directory, name)
            let temporaryPath = finalPath + StoreFormat.temporarySuffix
            let descriptor = try FileSystem.open(temporaryPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
            do {
                try FileSystem.writeAll(descriptor, bytes, path: temporaryPath)
                try FileSystem.sync(descriptor, path: temporaryPath)
            } catch {
                FileSystem.close(descriptor)
                try? FileSystem.remove(temporaryPath)
                throw error
            }
            FileSystem.close(descriptor)
            fsyncCount += 1
            try FileSystem.rename(temporaryPath, to: finalPath)
            try syncDirectory()
        }
        marks = next
        marksToWrite = nil
    }

    /// The newest valid copy's segment and clean end, with the highest counter marks of any valid
    /// copy; nil if neither copy exists. Throws if copies exist but none is valid.
    func readMarks() throws -> MarksFile? {
        var found: [MarksFile] = []
        var damaged: [(name: String, reason: String)] = []
        for name in StoreFormat.marksFileNames {
            let path = FileSystem.join(directory, name)
            guard FileSystem.exists(path) else { continue }
            switch StoreFormat.decodeMarks(try FileSystem.readAll(path)) {
            case .success(let marks): found.append(marks)
            case .failure(let damage): damaged.append((name, damage.reason))
            }
        }
        for (name, reason) in damaged {
            logger.warning("MARKS copy \(name) is damaged (\(reason)); using the other copy", metadata: ["file": "\(name)"])
        }
        guard var newest = found.max(by: { $0.generation < $1.generation }) else {
            if let first = damaged.first {
                throw StoreError.corruptDataDirectory(file: first.name, offset: 0,
                                                      problem: "no valid MARKS copy (\(damaged.map { "\($0.name): \($0.reason)" }.joined(separator: ", ")))")
            }
            return nil
        }
        for other in found { newest.counters = newest.counters.merged(with: other.counters) }
        return newest
    }
}
