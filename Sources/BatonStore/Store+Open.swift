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
    /// docs/STORAGE.md. Throws for a directory of another format, one in use by another store, or
    /// an I/O failure; and for damage a crash cannot cause (`corruptDataDirectory`, `logGap`)
    /// unless `repair` is set, which cuts the log at the damage and says what it dropped. A torn
    /// tail (the end of the last segment after a crash) is cut with a warning either way.
    public static func open(
        directory: String,
        configuration: StoreConfiguration = StoreConfiguration(),
        repair: Bool = false,
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
            let recovery = try store.recover(repair: repair)
            return (store, recovery)
        } catch {
            store.releaseDescriptors()
            store.isClosed = true
            throw error
        }
    }

    private func path(_ name: String) -> String { FileSystem.join(directory, name) }

    func recover(repair: Bool) throws -> Recovery {
        try FileSystem.makePrivate(directory, logger: logger)
        let names = try FileSystem.listDirectory(directory)
        var repairs: [String] = []
        let formatVersion: UInt8
        do {
            formatVersion = try checkFormat(names: names)
        } catch let error as StoreError where repair {
            // A damaged or missing FORMAT in a directory of store files: the headers of the files
            // still say their format, and a newer one is still refused when they are read.
            switch error {
            case .unreadableFormatFile, .missingFormatFile:
                break
            case .unsupportedFormat(let path, let found, _) where path.hasSuffix(StoreFormat.formatFileName)
                    && found > StoreFormat.version && marksFilesSayThisFormat():
                // A newer format would have written MARKS of that format too: this FORMAT is damaged.
                break
            default:
                throw error
            }
            try writeFormatFile()
            repairs.append("\(error); FORMAT rewritten (format \(StoreFormat.version))")
            formatVersion = StoreFormat.version
        }

        // Leftovers of a snapshot, MARKS or FORMAT write that a crash interrupted; never renamed, never needed.
        for name in names where name.hasSuffix(StoreFormat.temporarySuffix) {
            try FileSystem.remove(path(name))
        }

        // The marks outside the log. A directory of format 1 has none yet (upgraded below).
        var storedMarks: MarksFile?
        do {
            storedMarks = try readMarks()
        } catch let error as StoreError where repair {
            repairs.append("\(error); the MARKS files are rebuilt from the log")
        }
        let hasSegments = names.contains { StoreFormat.parseSegmentFileName($0) != nil }
        if storedMarks == nil && formatVersion >= StoreFormat.firstVersionWithMarks && hasSegments && repairs.isEmpty {
            let problem = "both MARKS copies are missing"
            guard repair else {
                throw StoreError.corruptDataDirectory(file: StoreFormat.marksFileNames[0], offset: 0, problem: problem)
            }
            repairs.append(problem + "; they are rebuilt from the log")
        }
        // After a clean close the log's end is known: nothing short of it is a torn tail.
        let cleanEndLSN = storedMarks?.cleanEndLSN

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
        let segmentsOnDisk = names.compactMap(StoreFormat.parseSegmentFileName).sorted()
        var segmentLSNs = segmentsOnDisk
        var records: [RecoveredRecord] = []
        var truncation: LogTruncation?
        var lastLogLSN: LogSequenceNumber = 0
        /// The last segment read and kept: where appends may continue.
        var tail: (firstLSN: LogSequenceNumber, bytes: Int, recordCount: Int)?

        /// Repair: sets `segmentLSNs[index...]` aside as `<name>.corrupt` and says so.
        func setAside(from index: Int, because problem: String) throws {
            let aside = segmentLSNs[index...].map { StoreFormat.segmentFileName(firstLSN: $0) }
            for name in aside { try FileSystem.rename(path(name), to: path(name + StoreFormat.corruptSuffix)) }
            segmentLSNs.removeSubrange(index...)
            try syncDirectory()
            repairs.append("\(problem): set aside \(aside.joined(separator: ", ")) (renamed to *.corrupt)")
        }

        // LSNs start at 1: the store never names a segment for LSN 0 (it has no "LSN before"); such
        // a file is damage (found by the recovery fuzz target).
        if segmentLSNs.first == 0 {
            let name = StoreFormat.segmentFileName(firstLSN: 0)
            let problem = "a segment named for LSN 0 (LSNs start at 1)"
            guard repair else { throw StoreError.corruptDataDirectory(file: name, offset: 0, problem: problem) }
            try FileSystem.rename(path(name), to: path(name + StoreFormat.corruptSuffix))
            try syncDirectory()
            segmentLSNs.removeFirst()
            repairs.append("\(name): \(problem); set aside as \(name)\(StoreFormat.corruptSuffix)")
        }
        if let firstSegmentLSN = segmentLSNs.first {
            // Segments wholly before the snapshot are kept (for falling back to an older snapshot)
            // but not read; the first one read is the one holding `startLSN`.
            var index: Int
            if let firstNeeded = segmentLSNs.lastIndex(where: { $0 <= startLSN }) {
                index = firstNeeded
            } else {
                let gap = StoreError.logGap(directory: directory, expectedLSN: startLSN,
                                            foundFile: StoreFormat.segmentFileName(firstLSN: firstSegmentLSN))
                guard repair else { throw gap }
                try setAside(from: 0, because: "\(gap)")
                index = 0
            }
            var expectedFirstLSN: LogSequenceNumber?
            while index < segmentLSNs.count {
                let firstLSN = segmentLSNs[index]
                let name = StoreFormat.segmentFileName(firstLSN: firstLSN)
                if let expectedFirstLSN, firstLSN != expectedFirstLSN {
                    let gap = StoreError.logGap(directory: directory, expectedLSN: expectedFirstLSN, foundFile: name)
                    guard repair else { throw gap }
                    try setAside(from: index, because: "\(gap)")
                    break
                }
                let bytes = try FileSystem.readAll(path(name))
                let scan = try StoreFormat.scanSegment(bytes, firstLSN: firstLSN, path: path(name))
                for record in scan.records where record.lsn >= startLSN {
                    records.append(RecoveredRecord(lsn: record.lsn, payload: Array(bytes[record.payload])))
                }
                if let last = scan.lastLSN { lastLogLSN = last }

                if let problem = scan.problem {
                    // Nothing after the first bad byte can be trusted to follow it, so the log is
                    // recovered as a prefix. Only a torn tail may be cut without asking.
                    let isLast = index == segmentLSNs.count - 1
                    let damage = StoreFormat.classifyDamage(
                        problem, bytes: bytes, validEnd: scan.validEnd, lastLSN: scan.lastLSN ?? (firstLSN - 1),
                        isLastSegment: isLast, isNamedInMarks: storedMarks?.lastSegmentFirstLSN == firstLSN,
                        closedCleanly: cleanEndLSN != nil)
                    let offset = problem == .badSegmentHeader ? 0 : scan.validEnd
                    if let corruption = damage {
                        guard repair else {
                            throw StoreError.corruptDataDirectory(file: name, offset: offset, problem: corruption)
                        }
                    }
                    let later = segmentLSNs[(index + 1)...].map { StoreFormat.segmentFileName(firstLSN: $0) }
                    if damage != nil {
                        // Keep what is cut, for inspection: the file's tail and the later segments.
                        try FileSystem.writeNew(path("\(name).\(offset)\(StoreFormat.corruptSuffix)"), Array(bytes[offset...]))
                        for laterName in later { try FileSystem.rename(path(laterName), to: path(laterName + StoreFormat.corruptSuffix)) }
                        repairs.append("\(name) at offset \(offset): \(damage!); cut there, \(bytes.count - offset) bytes "
                                       + "kept in \(name).\(offset).corrupt" + (later.isEmpty ? "" : ", later segments set aside: \(later.joined(separator: ", "))"))
                    } else {
                        for laterName in later { try FileSystem.remove(path(laterName)) }
                    }
                    segmentLSNs.removeSubrange((index + 1)...)
                    if problem == .badSegmentHeader {
                        try FileSystem.remove(path(name))
                        segmentLSNs.remove(at: index)
                        // `tail` stays the segment before this one, if it was read.
                    } else {
                        let descriptor = try FileSystem.open(path(name), flags: O_WRONLY)
                        defer { FileSystem.close(descriptor) }
                        try FileSystem.truncate(descriptor, length: scan.validEnd, path: path(name))
                        try FileSystem.sync(descriptor, path: path(name))
                        fsyncCount += 1
                        tail = (firstLSN, scan.validEnd, scan.records.count)
                    }
                    try syncDirectory()
                    let cut = LogTruncation(fileName: name, offset: offset, reason: problem,
                                            discardedBytes: bytes.count - offset, deletedSegments: later)
                    truncation = cut
                    logger.warning(
                        "write-ahead log cut at \(name) offset \(offset): \(problem.rawValue)\(damage == nil ? " (torn tail)" : " (repair)"); \(cut.discardedBytes) bytes discarded, \(later.count) later segments \(damage == nil ? "deleted" : "set aside")",
                        metadata: [
                            "file": "\(name)", "offset": "\(offset)", "reason": "\(problem.rawValue)",
                            "discarded_bytes": "\(cut.discardedBytes)", "deleted_segments": "\(later)",
                        ])
                    break
                }
                tail = (firstLSN, bytes.count, scan.records.count)
                expectedFirstLSN = firstLSN + LogSequenceNumber(scan.records.count)
                index += 1
            }
        }

        // A lost end of the log: the segment appends last went to, or the LSN a clean close left.
        if repairs.isEmpty, let storedMarks {
            let logEnd = max(snapshot?.lsn ?? 0, lastLogLSN)
            var problem: (file: String, offset: Int, text: String)?
            let named = storedMarks.lastSegmentFirstLSN
            if named > 0 && !segmentsOnDisk.contains(named) {
                problem = (StoreFormat.segmentFileName(firstLSN: named), 0,
                           "the log's last segment is missing (MARKS names it); the records in it are lost")
            } else if let cleanEndLSN, logEnd < cleanEndLSN {
                let lastName = segmentLSNs.last.map { StoreFormat.segmentFileName(firstLSN: $0) } ?? "the log"
                problem = (lastName, tail?.bytes ?? 0,
                           "the log ends at LSN \(logEnd) but was closed cleanly at LSN \(cleanEndLSN); records are missing from its end")
            }
            if let problem {
                guard repair else { throw StoreError.corruptDataDirectory(file: problem.file, offset: problem.offset, problem: problem.text) }
                repairs.append("\(problem.file): \(problem.text); accepted as it is")
            }
        }
        for repaired in repairs {
            logger.critical("repair: \(repaired)")
        }

        let nextLSN = max(snapshot?.lsn ?? 0, lastLogLSN) + 1
        lastLSN = nextLSN - 1
        marks = storedMarks ?? marks
        if storedMarks == nil {
            // MARKS exist before any segment is created: a crash in between then leaves no
            // segment without them, and missing MARKS beside segments always means damage.
            try writeMarks(marks)
        }
        try openTail(tail, segmentLSNs: segmentLSNs, nextLSN: nextLSN)
        writtenLSN = lastLSN
        durableLSN = lastLSN
        // From here until a clean close, the log's end is not known on disk.
        // (A new segment has just written them; a continued one has not.)
        if marks.generation == 0 || marks.lastSegmentFirstLSN != segmentFirstLSN || marks.cleanEndLSN != nil {
            var open = marks
            open.lastSegmentFirstLSN = segmentFirstLSN
            open.cleanEndLSN = nil
            try writeMarks(open)
        }
        if formatVersion < StoreFormat.version { try writeFormatFile() }

        logger.info("store recovered", metadata: [
            "directory": "\(directory)",
            "snapshot_lsn": "\(snapshot.map { String($0.lsn) } ?? "none")",
            "records": "\(records.count)",
            "next_lsn": "\(nextLSN)",
            "segment": "\(StoreFormat.segmentFileName(firstLSN: segmentFirstLSN))",
        ])
        var recovery = Recovery(snapshot: snapshot, records: records, nextLSN: nextLSN,
                                truncation: truncation, corruptSnapshots: corruptSnapshots)
        recovery.marks = marks.counters
        recovery.repairs = repairs
        return recovery
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
                trustedBytes = tail.bytes
                segmentRecordCount = tail.recordCount
                closedSegmentFirstLSNs = segmentLSNs.filter { $0 != tail.firstLSN }
                return
            }
            FileSystem.close(descriptor)
        }
        closedSegmentFirstLSNs = segmentLSNs
        try createSegment(firstLSN: nextLSN)
    }

    /// Reads FORMAT, or writes it in a directory with no store files yet, and returns the version.
    /// Touches nothing else first, so a directory of a newer format is left exactly as it was (LOCK
    /// aside, which every format keeps).
    private func checkFormat(names: [String]) throws -> UInt8 {
        let formatPath = path(StoreFormat.formatFileName)
        if names.contains(StoreFormat.formatFileName) {
            guard let version = StoreFormat.parseFormatFile(try FileSystem.readAll(formatPath)) else {
                throw StoreError.unreadableFormatFile(path: formatPath)
            }
            guard StoreFormat.readableVersions.contains(version) else {
                throw StoreError.unsupportedFormat(path: formatPath, foundVersion: version,
                                                   readableVersions: StoreFormat.readableVersions)
            }
            // Format 1 lacks the MARKS files: recovery writes them, then FORMAT (docs/STORAGE.md, "Versions").
            return version
        }
        let holdsStoreFiles = names.contains { name in
            StoreFormat.parseSegmentFileName(name) != nil || StoreFormat.parseSnapshotFileName(name) != nil
                || name.hasSuffix(".snap" + StoreFormat.corruptSuffix)
        }
        if holdsStoreFiles { throw StoreError.missingFormatFile(directory: directory) }
        try writeFormatFile()
        logger.info("data directory created", metadata: ["directory": "\(directory)", "format": "\(StoreFormat.version)"])
        return StoreFormat.version
    }

    /// True if a valid MARKS copy exists and every valid one is of a format this build writes.
    private func marksFilesSayThisFormat() -> Bool {
        let versions = StoreFormat.marksFileNames.compactMap { name -> UInt8? in
            guard let bytes = try? FileSystem.readAll(path(name)), case .success = StoreFormat.decodeMarks(bytes) else { return nil }
            return bytes[8]
        }
        return !versions.isEmpty && versions.allSatisfy { StoreFormat.readableVersions.contains($0) }
    }

    /// FORMAT naming this build's version: temporary file, fsync, rename, directory fsync.
    private func writeFormatFile() throws {
        let formatPath = path(StoreFormat.formatFileName)
        let temporaryPath = formatPath + StoreFormat.temporarySuffix
        let descriptor = try FileSystem.open(temporaryPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
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
    }
}
