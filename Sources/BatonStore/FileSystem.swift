#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

/// Thin POSIX wrappers: the store needs exact control over fsync, O_EXCL, rename and flock, which
/// higher-level file APIs hide. Every failure becomes `StoreError.io` naming the call and the path.
enum FileSystem {
    static func error(_ operation: String, _ path: String, _ code: Int32 = errno) -> StoreError {
        .io(operation: operation, path: path, errno: code)
    }

    static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    static func open(_ path: String, flags: Int32, mode: mode_t = 0o600) throws -> Int32 {
        while true {
            let descriptor = systemOpen(path, flags | O_CLOEXEC, mode)
            if descriptor >= 0 { return descriptor }
            if errno == EINTR { continue }
            throw error("open", path)
        }
    }

    static func close(_ descriptor: Int32) {
        // A failed close of a file already fsynced (or about to be discarded) changes nothing we rely on.
        _ = systemClose(descriptor)
    }

    /// Writes every byte, retrying short writes and EINTR: at the file's position, or at
    /// `fileOffset` (pwrite, the position unchanged) when given. (`path` is only for the error: the
    /// log's path is built only if a write fails, not on every commit.)
    static func writeAll(_ descriptor: Int32, _ bytes: [UInt8], at fileOffset: Int? = nil, path: @autoclosure () -> String) throws {
        try bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let pointer = buffer.baseAddress! + offset, count = buffer.count - offset
                let written = fileOffset.map { pwrite(descriptor, pointer, count, off_t($0 + offset)) }
                    ?? systemWrite(descriptor, pointer, count)
                if written < 0 {
                    let code = errno
                    if code == EINTR { continue }
                    throw error("write", path(), code)
                }
                offset += written
            }
        }
    }

    /// fsync; with `dataOnly`, fdatasync where there is one: the data and the metadata needed to read
    /// it back (the size), not the timestamps (a log segment's records: recovery never reads its times).
    static func sync(_ descriptor: Int32, dataOnly: Bool = false, path: @autoclosure () -> String) throws {
        while systemSync(descriptor, dataOnly: dataOnly) != 0 {
            let code = errno
            if code == EINTR { continue }
            throw error(dataOnly ? "fdatasync" : "fsync", path(), code)
        }
    }

    /// Makes creations, renames and deletions inside `directory` durable.
    static func syncDirectory(_ directory: String) throws {
        let descriptor = try open(directory, flags: O_RDONLY | O_DIRECTORY)
        defer { close(descriptor) }
        try sync(descriptor, path: directory)
    }

    static func truncate(_ descriptor: Int32, length: Int, path: String) throws {
        while ftruncate(descriptor, off_t(length)) != 0 {
            if errno == EINTR { continue }
            throw error("ftruncate", path)
        }
    }

    static func readAll(_ path: String) throws -> [UInt8] {
        let descriptor = try open(path, flags: O_RDONLY)
        defer { close(descriptor) }
        var result: [UInt8] = []
        var status = stat()
        if fstat(descriptor, &status) == 0, status.st_size > 0 {
            result.reserveCapacity(Int(status.st_size))
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = chunk.withUnsafeMutableBytes { systemRead(descriptor, $0.baseAddress!, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw error("read", path)
            }
            if count == 0 { return result }
            result.append(contentsOf: chunk[0..<count])
        }
    }

    static func listDirectory(_ directory: String) throws -> [String] {
        guard let stream = opendir(directory) else { throw error("opendir", directory) }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func remove(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT { throw error("unlink", path) }
    }

    static func rename(_ source: String, to destination: String) throws {
        if systemRename(source, destination) != 0 { throw error("rename", source + " -> " + destination) }
    }

    static func exists(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
    }

    /// `mkdir -p`: creates missing parents too.
    static func makeDirectories(_ path: String) throws {
        if isDirectory(path) { return }
        if exists(path) { throw StoreError.notADirectory(path: path) }
        var parent = path
        while parent.hasSuffix("/") && parent.count > 1 { parent.removeLast() }
        if let slash = parent.lastIndex(of: "/"), slash != parent.startIndex {
            try makeDirectories(String(parent[..<slash]))
        }
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw error("mkdir", path) }
        guard isDirectory(path) else { throw StoreError.notADirectory(path: path) }
    }

    /// Writes `path` (mode 0600) to hold exactly `bytes`, fsynced. (Replaces a file of that name:
    /// a repair that a crash interrupted writes the same bytes again.)
    static func writeNew(_ path: String, _ bytes: [UInt8]) throws {
        let descriptor = try open(path, flags: O_WRONLY | O_CREAT | O_TRUNC)
        defer { close(descriptor) }
        try writeAll(descriptor, bytes, path: path)
        try sync(descriptor, path: path)
    }

    /// The data directory is the user's alone: the directory 0700, every file in it 0600. Looser
    /// modes (a directory made by an older batond, or by hand) are tightened, with a warning.
    static func makePrivate(_ directory: String, logger: Logger) throws {
        try tighten(directory, to: 0o700, logger: logger)
        for name in try listDirectory(directory) {
            let path = join(directory, name)
            var status = stat()
            guard lstat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { continue }
            try tighten(path, to: 0o600, logger: logger)
        }
    }

    private static func tighten(_ path: String, to mode: mode_t, logger: Logger) throws {
        var status = stat()
        guard stat(path, &status) == 0 else { throw error("stat", path) }
        let current = status.st_mode & 0o7777
        guard current & ~mode != 0 else { return }
        if chmod(path, current & mode) != 0 { throw error("chmod", path) }
        logger.warning("\(path) was mode \(String(current, radix: 8)); now \(String(current & mode, radix: 8)) (the data directory is private)")
    }

    /// An exclusive advisory lock held for as long as the descriptor stays open; nil if another
    /// descriptor (another daemon, or another store in this process) holds it.
    static func lockExclusively(_ path: String) throws -> Int32? {
        let descriptor = try open(path, flags: O_RDWR | O_CREAT)
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            close(descriptor)
            if code == EWOULDBLOCK { return nil }
            throw error("flock", path, code)
        }
        return descriptor
    }

    static func describe(errno code: Int32) -> String {
        String(cString: strerror(code))
    }
}

// The C names, spelled once so they do not clash with the wrappers above.
private func systemOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 {
    #if canImport(Darwin)
    return Darwin.open(path, flags, mode)
    #elseif canImport(Musl)
    return Musl.open(path, flags, mode)
    #else
    return Glibc.open(path, flags, mode)
    #endif
}
private func systemClose(_ descriptor: Int32) -> Int32 {
    #if canImport(Darwin)
    return Darwin.close(descriptor)
    #elseif canImport(Musl)
    return Musl.close(descriptor)
    #else
    return Glibc.close(descriptor)
    #endif
}
private func systemWrite(_ descriptor: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Darwin)
    return Darwin.write(descriptor, buffer, count)
    #elseif canImport(Musl)
    return Musl.write(descriptor, buffer, count)
    #else
    return Glibc.write(descriptor, buffer, count)
    #endif
}
private func systemRead(_ descriptor: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    #if canImport(Darwin)
    return Darwin.read(descriptor, buffer, count)
    #elseif canImport(Musl)
    return Musl.read(descriptor, buffer, count)
    #else
    return Glibc.read(descriptor, buffer, count)
    #endif
}
private func systemSync(_ descriptor: Int32, dataOnly: Bool) -> Int32 {
    #if canImport(Darwin)
    return Darwin.fsync(descriptor)
    #elseif canImport(Musl)
    return dataOnly ? Musl.fdatasync(descriptor) : Musl.fsync(descriptor)
    #else
    return dataOnly ? Glibc.fdatasync(descriptor) : Glibc.fsync(descriptor)
    #endif
}
private func systemRename(_ source: String, _ destination: String) -> Int32 {
    #if canImport(Darwin)
    return Darwin.rename(source, destination)
    #elseif canImport(Musl)
    return Musl.rename(source, destination)
    #else
    return Glibc.rename(source, destination)
    #endif
}
