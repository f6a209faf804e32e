/// The outcome of reading one segment file.
struct SegmentScan {
    /// LSN and payload byte range of each valid record, in order.
    var records: [(lsn: LogSequenceNumber, payload: Range<Int>)] = []
    /// Offset just past the last valid record (the header's end if there is none).
    var validEnd: Int = 0
    /// Why the scan stopped before the end of the file; nil if every byte was valid.
    var problem: LogTruncation.Reason?

    var lastLSN: LogSequenceNumber? { records.last?.lsn }
}

enum SnapshotCheck {
    case valid(RecoveredSnapshot)
    case corrupt(reason: String)
}

extension StoreFormat {
    /// Reads records until the end of the file or the first one that fails a check. Throws only for
    /// a well-formed header of a format this build does not read (never treated as corruption).
    static func scanSegment(_ bytes: [UInt8], firstLSN: LogSequenceNumber, path: String) throws -> SegmentScan {
        var scan = SegmentScan()
        guard bytes.count >= segmentHeaderBytes,
              Array(bytes[0..<8]) == segmentMagic,
              readUInt32(bytes, at: 20) == checksum(bytes[8..<20]) else {
            scan.problem = .badSegmentHeader
            return scan
        }
        let version = bytes[8]
        guard readableVersions.contains(version) else {
            throw StoreError.unsupportedFormat(path: path, foundVersion: version, readableVersions: readableVersions)
        }
        guard readUInt64(bytes, at: 12) == firstLSN else {
            // The name and the header disagree: the file is not what its name says.
            scan.problem = .badSegmentHeader
            return scan
        }
        var offset = segmentHeaderBytes
        var expectedLSN = firstLSN
        scan.validEnd = offset
        while offset < bytes.count {
            // Zeros for at least a whole record header: blocks allocated but never written. Fewer
            // zero bytes are the start of a torn record header (a length's high bytes are zero).
            if bytes.count - offset >= recordHeaderBytes && bytes[offset...].allSatisfy({ $0 == 0 }) {
                scan.problem = .zeroFilled
                return scan
            }
            guard bytes.count - offset >= recordHeaderBytes else {
                scan.problem = .tornRecord
                return scan
            }
            let length = Int(readUInt32(bytes, at: offset))
            let storedChecksum = readUInt32(bytes, at: offset + 4)
            let lsn = readUInt64(bytes, at: offset + 8)
            guard length <= recordPayloadBytesLimit else {
                scan.problem = .lengthOutOfRange
                return scan
            }
            let payloadStart = offset + recordHeaderBytes
            guard bytes.count - payloadStart >= length else {
                scan.problem = .tornRecord
                return scan
            }
            let payloadRange = payloadStart..<(payloadStart + length)
            guard recordChecksum(lengthAndLSN: bytes[offset..<payloadStart], payload: bytes[payloadRange]) == storedChecksum else {
                scan.problem = .checksumMismatch
                return scan
            }
            guard lsn == expectedLSN else {
                scan.problem = .sequenceMismatch
                return scan
            }
            scan.records.append((lsn, payloadRange))
            expectedLSN += 1
            offset = payloadRange.upperBound
            scan.validEnd = offset
        }
        return scan
    }

    /// Whether a problem `scanSegment` found may be a torn tail (nil: cut it) or is corruption (the
    /// reason). A torn tail is what a crash leaves: an incomplete last record (the file ends inside
    /// its header or payload) or zero bytes to the end of the last segment, with no valid record
    /// after it, in a log not closed cleanly since. A complete record that fails its checks (CRC,
    /// length, LSN) is never torn: a write cut short leaves a prefix, not different bytes. A header
    /// shorter than its size or all zero on the last segment is a creation the crash interrupted,
    /// unless MARKS already names it.
    static func classifyDamage(_ problem: LogTruncation.Reason, bytes: [UInt8], validEnd: Int, lastLSN: LogSequenceNumber,
                               isLastSegment: Bool, isNamedInMarks: Bool, closedCleanly: Bool) -> String? {
        let corruption: String
        switch problem {
        case .badSegmentHeader:
            let torn = bytes.count < segmentHeaderBytes || bytes[0..<segmentHeaderBytes].allSatisfy { $0 == 0 }
            if torn && isLastSegment && !isNamedInMarks && !closedCleanly { return nil }
            return "the segment header is damaged (magic, checksum or first LSN)"
        case .sequenceMismatch:
            return "a valid record with LSN \(readUInt64(bytes, at: validEnd + 8)) where LSN \(lastLSN + 1) belongs"
        case .checksumMismatch, .lengthOutOfRange:
            return "\(problem.rawValue) at the record for LSN \(lastLSN + 1): a complete record with wrong bytes (a crash leaves only an incomplete one)"
        case .tornRecord, .zeroFilled:
            corruption = "\(problem.rawValue) at the record for LSN \(lastLSN + 1)"
        }
        if problem == .tornRecord && lengthFieldIsDamaged(bytes, at: validEnd) {
            return "the length field of the record for LSN \(lastLSN + 1) is damaged: with the length the file holds, its CRC matches"
        }
        if !isLastSegment { return corruption + " in a segment that is not the last (segments are fsynced whole before the next starts)" }
        if closedCleanly { return corruption + " in a log that was closed cleanly (a crash cannot leave this)" }
        if let later = findRecord(bytes, from: validEnd + 1, afterLSN: lastLSN) {
            return corruption + ", followed by a valid record at offset \(later) (a crash leaves damage only at the very end)"
        }
        return nil
    }

    /// A record header that claims more bytes than the file has, while the bytes there are a whole
    /// record under the length that ends the file: a damaged length field, not a torn write.
    static func lengthFieldIsDamaged(_ bytes: [UInt8], at offset: Int) -> Bool {
        guard bytes.count - offset >= recordHeaderBytes else { return false }
        var header = Array(bytes[offset..<(offset + recordHeaderBytes)])
        let actual = UInt32(bytes.count - offset - recordHeaderBytes)
        for index in 0..<4 { header[index] = UInt8(truncatingIfNeeded: actual >> UInt32(24 - 8 * index)) }
        return recordChecksum(lengthAndLSN: header[...], payload: bytes[(offset + recordHeaderBytes)...]) == readUInt32(bytes, at: offset + 4)
    }

    /// The offset of the first well-formed record (length in range, CRC right) from `offset` on
    /// whose LSN is after `afterLSN` (by less than 2^32, to skip chance matches cheaply).
    static func findRecord(_ bytes: [UInt8], from offset: Int, afterLSN: LogSequenceNumber) -> Int? {
        var start = offset
        while start + recordHeaderBytes <= bytes.count {
            defer { start += 1 }
            let lsn = readUInt64(bytes, at: start + 8)
            guard lsn > afterLSN, lsn - afterLSN < 1 << 32 else { continue }
            let length = Int(readUInt32(bytes, at: start))
            guard length <= recordPayloadBytesLimit, bytes.count - start - recordHeaderBytes >= length else { continue }
            let payloadStart = start + recordHeaderBytes
            if recordChecksum(lengthAndLSN: bytes[start..<payloadStart], payload: bytes[payloadStart..<(payloadStart + length)])
                == readUInt32(bytes, at: start + 4) {
                return start
            }
        }
        return nil
    }

    /// Checks a whole snapshot file. Throws only for a valid header of an unreadable format version.
    static func checkSnapshot(_ bytes: [UInt8], lsn: LogSequenceNumber, path: String) throws -> SnapshotCheck {
        guard bytes.count >= snapshotHeaderBytes else {
            return .corrupt(reason: "shorter than its header (\(bytes.count) bytes)")
        }
        guard Array(bytes[0..<8]) == snapshotMagic else { return .corrupt(reason: "bad magic") }
        let payloadLength = readUInt64(bytes, at: 20)
        guard payloadLength == UInt64(bytes.count - snapshotHeaderBytes) else {
            return .corrupt(reason: "header says \(payloadLength) payload bytes, file has \(bytes.count - snapshotHeaderBytes)")
        }
        let payload = bytes[snapshotHeaderBytes...]
        guard readUInt32(bytes, at: 28) == checksum(payload, seed: checksum(bytes[8..<28])) else {
            return .corrupt(reason: "checksum mismatch")
        }
        let version = bytes[8]
        guard readableVersions.contains(version) else {
            throw StoreError.unsupportedFormat(path: path, foundVersion: version, readableVersions: readableVersions)
        }
        guard readUInt64(bytes, at: 12) == lsn else {
            return .corrupt(reason: "header LSN \(readUInt64(bytes, at: 12)) does not match the file name")
        }
        return .valid(RecoveredSnapshot(lsn: lsn, bytes: Array(payload)))
    }
}
