#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

extension Store {
    /// Opens (creating if missing) the data directory at `directory`, recovers it, and returns the
    /// store ready to append together with what the namespace is rebuilt from. Recovery procedure:
    /// docs/STORAGE.md. Throws for a directory of another format, one in use by another store, a
    /// hole in the log, or an I/O failure; a torn or corrupt tail is cut (a warning names the file
    /// and offset) and the store comes up.
    public static func open(
        directory: String,
        configuration: StoreConfiguration = StoreConfiguration(),
        logger: Logger
    ) throws -> (store: Store, recovery: Recovery) {
        configuration.validate()
        try FileSystem.makeDirectories(directory)
        let lockPath = FileSystem.join(directory, StoreFormat.lockFileName)
        guard let lockDescriptor = try FileSystem.lockExclusively(lockPath) else {
            throw StoreError.directoryLocked(path: directory)
        }
        let store = Store(directory: directory, configuration: configuration, logger: logger, lockDescriptor: lockDescriptor)
        do {
            let recovery = try store.recover()
            return (store, recovery)
        } catch {
            store.releaseDescriptors()
            store.isClosed = true
            throw error
        }
    }

    private func path(_ name: String) -> String { FileSystem.join(directory, name) }

    func recover() throws -> Recovery {
        let names = try FileSystem.listDirectory(directory)
        try checkFormat(names: names)

        // Leftovers of a snapshot or FORMAT write that a crash interrupted; never renamed, never needed.
        for name in names where name.hasSuffix(StoreFormat.temporarySuffix) {
            try FileSystem.remove(path(name))
        }

        // The newest snapshot that passes its checks; corrupt ones are renamed aside so that pruning
        // never counts them among the kept.
        var snapshot: RecoveredSnapshot?
        var corruptSnapshots: [String] = []
        for lsn in names.compactMap(StoreFormat.parseSnapshotFileName).sorted(by: >) {
            let name = StoreFormat.snapshotFileName(lsn: lsn)
            switch try StoreFormat.checkSnapshot(try FileSystem.readAll(path(name)), lsn: lsn, path: path(name)) {
            case .valid(let found):
                snapshot = found
            case .corrupt(let reason):
                logger.warning("snapshot \(name) is corrupt (\(reason)); falling back to the previous one", metadata: [
                    "file": "\(name)", "reason": "\(reason)",
                ])
                try FileSystem.rename(path(name), to: path(name + StoreFormat.corruptSuffix))
                corruptSnapshots.append(name)
            }
            if snapshot != nil { break }
        }
        if !corruptSnapshots.isEmpty { try syncDirectory() }

        let startLSN = (snapshot?.lsn ?? 0) + 1
        var segmentLSNs = names.compactMap(StoreFormat.parseSegmentFileName).sorted()
        var records: [RecoveredRecord] = []
        var truncation: LogTruncation?
        var lastLogLSN: LogSequenceNumber = 0
        /// The last segment read and kept: where appends may continue.
        var tail: (firstLSN: LogSequenceNumber, bytes: Int, recordCount: Int)?

        if let firstSegmentLSN = segmentLSNs.first {
            // Segments wholly before the snapshot are kept (for falling back to an older snapshot)
            // but not read; the first one read is the one holding `startLSN`.
            guard let firstNeeded = segmentLSNs.lastIndex(where: { $0 <= startLSN }) else {
                throw StoreError.logGap(directory: directory, expectedLSN: startLSN,
                                        foundFile: StoreFormat.segmentFileName(firstLSN: firstSegmentLSN))
            }
            var expectedFirstLSN: LogSequenceNumber?
            var index = firstNeeded
            while index < segmentLSNs.count {
                let firstLSN = segmentLSNs[index]
                let name = StoreFormat.segmentFileName(firstLSN: firstLSN)
                if let expectedFirstLSN, firstLSN != expectedFirstLSN {
                    throw StoreError.logGap(directory: directory, expectedLSN: expectedFirstLSN, foundFile: name)
                }
                let bytes = try FileSystem.readAll(path(name))
                let scan = try StoreFormat.scanSegment(bytes, firstLSN: firstLSN, path: path(name))
                for record in scan.records where record.lsn >= startLSN {
                    records.append(RecoveredRecord(lsn: record.lsn, payload: Array(bytes[record.payload])))
                }
                if let last = scan.lastLSN { lastLogLSN = last }

                if let problem = scan.problem {
                    // Stop here: nothing after the first bad byte can be trusted to follow it.
                    let later = segmentLSNs[(index + 1)...].map { StoreFormat.segmentFileName(firstLSN: $0) }
                    for laterName in later { try FileSystem.remove(path(laterName)) }
                    segmentLSNs.removeSubrange((index + 1)...)
                    let offset: Int
                    if problem == .badSegmentHeader {
                        try FileSystem.remove(path(name))
                        segmentLSNs.remove(at: index)
                        offset = 0
                        // `tail` stays the segment before this one, if it was read.
                    } else {
                        let descriptor = try FileSystem.open(path(name), flags: O_WRONLY)
                        defer { FileSystem.close(descriptor) }
                        try FileSystem.truncate(descriptor, length: scan.validEnd, path: path(name))
                        try FileSystem.sync(descriptor, path: path(name))
                        fsyncCount += 1
                        offset = scan.validEnd
                        tail = (firstLSN, scan.validEnd, scan.records.count)
                    }
                    try syncDirectory()
                    let cut = LogTruncation(fileName: name, offset: offset, reason: problem,
                                            discardedBytes: bytes.count - offset, deletedSegments: later)
                    truncation = cut
                    logger.warning(
                        "write-ahead log cut at \(name) offset \(offset): \(problem.rawValue); \(cut.discardedBytes) bytes discarded, \(later.count) later segments deleted",
                        metadata: [
                            "file": "\(name)", "offset": "\(offset)", "reason": "\(problem.rawValue)",
                            "discardedBytes": "\(cut.discardedBytes)", "deletedSegments": "\(later)",
                        ])
                    break
                }
                tail = (firstLSN, bytes.count, scan.records.count)
                expectedFirstLSN = firstLSN + LogSequenceNumber(scan.records.count)
                index += 1
            }
        }

        let nextLSN = max(snapshot?.lsn ?? 0, lastLogLSN) + 1
        lastLSN = nextLSN - 1
        try openTail(tail, segmentLSNs: segmentLSNs, nextLSN: nextLSN)
        writtenLSN = lastLSN
        durableLSN = lastLSN

        logger.info("store recovered", metadata: [
            "directory": "\(directory)",
            "snapshotLSN": "\(snapshot.map { String($0.lsn) } ?? "none")",
            "records": "\(records.count)",
            "nextLSN": "\(nextLSN)",
            "segment": "\(StoreFormat.segmentFileName(firstLSN: segmentFirstLSN))",
        ])
        return Recovery(snapshot: snapshot, records: records, nextLSN: nextLSN,
                        truncation: truncation, corruptSnapshots: corruptSnapshots)
    }

    /// Continues in the last segment if it ends exactly before `nextLSN`, else starts a new one.
    /// Either way the last segment read is fsynced first: what recovery replayed (possibly only in
    /// the page cache after a process crash) must be durable before anything depends on it.
    private func openTail(_ tail: (firstLSN: LogSequenceNumber, bytes: Int, recordCount: Int)?,
                          segmentLSNs: [LogSequenceNumber], nextLSN: LogSequenceNumber) throws {
        if let tail {
            let tailPath = path(StoreFormat.segmentFileName(firstLSN: tail.firstLSN))
            let descriptor = try FileSystem.open(tailPath, flags: O_WRONLY | O_APPEND)
            do {
                try FileSystem.sync(descriptor, path: tailPath)
            } catch {
                FileSystem.close(descriptor)
                throw error
            }
            fsyncCount += 1
            if tail.firstLSN + LogSequenceNumber(tail.recordCount) == nextLSN && tail.bytes < configuration.segmentBytesMax {
                segmentDescriptor = descriptor
                segmentFirstLSN = tail.firstLSN
                segmentBytes = tail.bytes
                segmentRecordCount = tail.recordCount
                closedSegmentFirstLSNs = segmentLSNs.filter { $0 != tail.firstLSN }
                return
            }
            FileSystem.close(descriptor)
        }
        closedSegmentFirstLSNs = segmentLSNs
        try createSegment(firstLSN: nextLSN)
    }

    /// Reads FORMAT, or writes it in a directory with no store files yet. Touches nothing else first,
    /// so a directory of a newer format is left exactly as it was (LOCK aside, which every format keeps).
    private func checkFormat(names: [String]) throws {
        let formatPath = path(StoreFormat.formatFileName)
        if names.contains(StoreFormat.formatFileName) {
            guard let version = StoreFormat.parseFormatFile(try FileSystem.readAll(formatPath)) else {
                throw StoreError.unreadableFormatFile(path: formatPath)
            }
            guard StoreFormat.readableVersions.contains(version) else {
                throw StoreError.unsupportedFormat(path: formatPath, foundVersion: version,
                                                   readableVersions: StoreFormat.readableVersions)
            }
            // Upgrading an older format would go here (docs/STORAGE.md, "Versions"); 1 is the first.
            return
        }
        let holdsStoreFiles = names.contains { name in
            StoreFormat.parseSegmentFileName(name) != nil || StoreFormat.parseSnapshotFileName(name) != nil
                || name.hasSuffix(".snap" + StoreFormat.corruptSuffix)
        }
        if holdsStoreFiles { throw StoreError.missingFormatFile(directory: directory) }
        let temporaryPath = formatPath + StoreFormat.temporarySuffix
        let descriptor = try FileSystem.open(temporaryPath, flags: O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try FileSystem.writeAll(descriptor, StoreFormat.formatFileContents(version: StoreFormat.version), path: temporaryPath)
            try FileSystem.sync(descriptor, path: temporaryPath)
            fsyncCount += 1
        } catch {
            FileSystem.close(descriptor)
            throw error
        }
        FileSystem.close(descriptor)
        try FileSystem.rename(temporaryPath, to: formatPath)
        try syncDirectory()
        logger.info("data directory created", metadata: ["directory": "\(directory)", "format": "\(StoreFormat.version)"])
    }
}
