#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import BatonEngine
import BatonNamespace
import BatonProtocol
import BatonStore
import BatonTestSupport
import Logging

/// One libFuzzer input as a data directory (log segments, snapshots, MARKS, FORMAT), which is then
/// recovered as batond would at start: `Store.open` (with or without `--repair`), then the engine
/// rebuilt from the snapshot and the records. Recovery must either succeed or refuse with a named
/// error (`StoreError`, `RecoveryError`); crashes, hangs, huge allocations and any other error are
/// findings. A recovered engine must also survive its own snapshot: serialized and recovered again.
///
/// The input is an archive, so mutations hit file contents and the set of files alike:
///
///     flags(1: bit 0 = repair) then entries: kind(1) lsn(2, big-endian) length(2, big-endian) bytes
///
/// kind % 8 names the file: FORMAT, MARKS-a, MARKS-b, wal-<lsn>.log, snapshot-<lsn>.snap, a leftover
/// snapshot-<lsn>.snap.tmp, an unknown name, wal-<lsn>.log.corrupt. A later entry of the same name
/// replaces the earlier one; at most `filesMax` entries are read.
///
/// The store only reads and writes files (BatonStore/FileSystem.swift has no in-memory double), so
/// each run writes the directory out: under /dev/shm when there is one, which keeps it in memory.
public enum RecoveryFuzzer {
    static let filesMax = 16
    static let logger = Logger(label: "fuzz-recovery", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A directory of this process's own, emptied before each run.
    static let directory: String = {
        let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
        let path = "\(base)/baton-fuzz-recovery-\(getpid())"
        mkdir(path, 0o700)
        return path
    }()

    /// What became of one input.
    public enum Outcome: Equatable, Sendable {
        /// Recovered: this many records replayed, after a snapshot or not.
        case recovered(records: Int, fromSnapshot: Bool)
        /// Refused with a named error: by the store (`StoreError`) or by the namespace (`RecoveryError`).
        case refusedByStore, refusedByNamespace
    }

    @discardableResult
    public static func run(_ bytes: [UInt8]) -> Outcome {
        let files = unpack(bytes)
        clear(directory)
        for (name, contents) in files { write(contents, to: directory + "/" + name) }
        return recover(directory, repair: bytes.first.map { $0 & 1 == 1 } ?? false)
    }

    static func recover(_ directory: String, repair: Bool) -> Outcome {
        let opened: (store: Store, recovery: Recovery)
        do {
            opened = try Store.open(directory: directory, repair: repair, logger: logger)
        } catch is StoreError {
            return .refusedByStore
        } catch {
            preconditionFailure("recovery failed with an unnamed error: \(error)")
        }
        defer { try? opened.store.close() }
        let recovery = opened.recovery
        let engine: Engine
        do {
            engine = try Engine(configuration: EngineConfiguration(), now: Time(milliseconds: 1_000_000),
                                random: SeededGenerator(seed: 1), recoveringFrom: recovery.snapshot?.bytes,
                                records: recovery.records.lazy.map(\.payload))
        } catch {
            return .refusedByNamespace // RecoveryError: batond refuses to start.
        }
        engine.raiseCounters(transactions: recovery.marks.transactions,
                             sequences: recovery.lostRecords ? recovery.marks.sequences : nil)
        let snapshot = engine.snapshotSource().serialize()
        do {
            _ = try Engine(configuration: EngineConfiguration(), now: Time(milliseconds: 1_000_000),
                           random: SeededGenerator(seed: 1), recoveringFrom: snapshot, records: [[UInt8]]())
        } catch {
            preconditionFailure("a recovered namespace's own snapshot does not recover: \(error)")
        }
        return .recovered(records: recovery.records.count, fromSnapshot: recovery.snapshot != nil)
    }

    // MARK: The archive

    static func name(kind: UInt8, lsn: UInt64) -> String {
        let digits = String(lsn)
        let padded = String(repeating: "0", count: 20 - digits.count) + digits
        switch kind % 8 {
        case 0: return "FORMAT"
        case 1: return "MARKS-a"
        case 2: return "MARKS-b"
        case 3: return "wal-\(padded).log"
        case 4: return "snapshot-\(padded).snap"
        case 5: return "snapshot-\(padded).snap.tmp"
        case 6: return "unknown-\(lsn)"
        default: return "wal-\(padded).log.corrupt"
        }
    }

    /// The files an input names, in order (a truncated last entry keeps what is there).
    static func unpack(_ bytes: [UInt8]) -> [(name: String, contents: [UInt8])] {
        var files: [(name: String, contents: [UInt8])] = []
        var offset = 1
        while offset + 5 <= bytes.count && files.count < filesMax {
            let kind = bytes[offset]
            let lsn = UInt64(bytes[offset + 1]) << 8 | UInt64(bytes[offset + 2])
            let length = Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4])
            offset += 5
            let end = min(bytes.count, offset + length)
            let name = name(kind: kind, lsn: lsn)
            files.removeAll { $0.name == name }
            files.append((name, Array(bytes[offset..<end])))
            offset = end
        }
        return files
    }

    /// A data directory as an input (files whose names the archive cannot say are left out).
    public static func pack(directory: String, repair: Bool) -> [UInt8] {
        var bytes: [UInt8] = [repair ? 1 : 0]
        for entry in list(directory).sorted() {
            var match: (kind: UInt8, lsn: UInt64)?
            for kind in UInt8(0)..<8 {
                for lsn in candidateLSNs(entry) where name(kind: kind, lsn: lsn) == entry { match = (kind, lsn) }
            }
            guard let match, let contents = read(directory + "/" + entry), contents.count <= 0xFFFF else { continue }
            bytes += [match.kind, UInt8(match.lsn >> 8 & 0xFF), UInt8(match.lsn & 0xFF),
                      UInt8(contents.count >> 8), UInt8(contents.count & 0xFF)] + contents
        }
        return bytes
    }

    private static func candidateLSNs(_ name: String) -> [UInt64] {
        let digits = name.filter { $0 >= "0" && $0 <= "9" }
        return [0] + (UInt64(digits).map { $0 <= 0xFFFF ? [$0] : [] } ?? [])
    }

    // MARK: Seeds

    /// Real data directories made by the store and the engine: an empty one, a log alone, a
    /// snapshot with a log after it, each as it is and with `repair`. `scripts/fuzz.sh recovery`
    /// seeds its corpus with these (`FuzzRecovery --write-seeds DIR`).
    public static func seeds() -> [(name: String, bytes: [UInt8])] {
        var seeds: [(name: String, bytes: [UInt8])] = []
        let scratch = directory + "-seed"
        for (index, (operations, snapshotAfter)) in [(0, nil), (12, nil), (24, 10), (40, 30)].enumerated() {
            clear(scratch)
            makeDirectory(scratch, operations: operations, snapshotAfter: snapshotAfter)
            for repair in [false, true] {
                seeds.append(("seed-\(index)\(repair ? "-repair" : "")", pack(directory: scratch, repair: repair)))
            }
        }
        clear(scratch)
        rmdir(scratch)
        return seeds
    }

    /// Runs `operations` requests of one session (nodes, locks, releases, sets) through an engine,
    /// logging its records in a store at `path`; writes a snapshot after `snapshotAfter` of them.
    static func makeDirectory(_ path: String, operations: Int, snapshotAfter: Int?) {
        guard let (store, _) = try? Store.open(directory: path, logger: logger) else {
            preconditionFailure("cannot open a seed data directory at \(path)")
        }
        defer { try? store.close() }
        let engine = Engine(configuration: EngineConfiguration(), now: Time(milliseconds: 1_000_000), random: SeededGenerator(seed: 3))
        let connection: ConnectionID = 1
        var requestID: UInt32 = 0
        func send(_ request: Request) {
            requestID += 1
            engine.handle(request, requestID: requestID, from: connection, now: Time(milliseconds: 1_000_000))
            for output in engine.takeOutputs() {
                if case .persist(let record) = output { _ = try? store.append(record) }
            }
            try? store.commit()
        }
        _ = engine.connectionOpened(connection, transport: .unix, now: Time(milliseconds: 1_000_000))
        send(.hello(version: 1, clientName: "seed"))
        send(.openSession(timeoutMilliseconds: 10_000, flags: []))
        for step in 0..<operations {
            switch step % 4 {
            case 0: send(.create(path: "/n\(step)", data: Array("value \(step)".utf8), mode: CreateMode(kind: .persistent, sequential: false)))
            case 1: send(.acquire(LockRequest(path: "/locks/l\(step % 3)", kind: .exclusive, permits: 1,
                                              waitMilliseconds: 0, leaseMilliseconds: 0)))
            case 2: send(.set(path: "/n\(step - 2)", data: Array("changed".utf8), expectedVersion: anyVersion))
            default: send(.create(path: "/e\(step)", data: [], mode: CreateMode(kind: .ephemeral, sequential: true)))
            }
            if step + 1 == snapshotAfter {
                try? store.snapshotWriter.writeSnapshot(lsn: store.lastLSN, bytes: engine.snapshotSource().serialize())
            }
        }
    }

    // MARK: Files (plain POSIX: the fuzz loop must not depend on Foundation's error paths)

    static func list(_ path: String) -> [String] {
        guard let handle = opendir(path) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func clear(_ path: String) {
        mkdir(path, 0o700)
        for name in list(path) { unlink(path + "/" + name) }
    }

    static func write(_ bytes: [UInt8], to path: String) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(descriptor >= 0, "cannot write \(path)")
        defer { close(descriptor) }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            precondition(written > 0, "cannot write \(path)")
            offset += written
        }
    }

    static func read(_ path: String) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            bytes += buffer[..<count]
        }
        return bytes
    }
}
