import CZlib

/// Log sequence number: assigned by the log to each record, starting at 1, strictly increasing
/// across segments and restarts. 0 means "before the first record".
public typealias LogSequenceNumber = UInt64

/// The on-disk format, byte by byte (docs/STORAGE.md). All integers are big-endian, as on the wire.
public enum StoreFormat {
    /// The format this build writes. It reads this one only; a future build that changes the
    /// format raises it and upgrades older directories (docs/STORAGE.md, "Versions").
    public static let version: UInt8 = 2
    /// Formats this build can open. An older one listed here is upgraded on open.
    public static let readableVersions: ClosedRange<UInt8> = 1...2

    /// Upper bound on a record's payload that recovery accepts, whatever the configuration: a
    /// length field beyond it is corruption, not an allocation request.
    public static let recordPayloadBytesLimit = 64 * 1_048_576

    static let formatFileName = "FORMAT"
    static let lockFileName = "LOCK"
    static let formatFilePrefix = "baton-store-format "
    static let temporarySuffix = ".tmp"
    static let corruptSuffix = ".corrupt"

    static let segmentMagic: [UInt8] = Array("BATONWAL".utf8)
    static let snapshotMagic: [UInt8] = Array("BATONSNP".utf8)
    /// magic(8) version(1) reserved(3) firstLSN(8) crc32(4)
    static let segmentHeaderBytes = 24
    /// length(4) crc32(4) LSN(8), then the payload
    static let recordHeaderBytes = 16
    /// magic(8) version(1) reserved(3) LSN(8) payloadLength(8) crc32(4), then the payload
    static let snapshotHeaderBytes = 32

    // MARK: File names

    static func segmentFileName(firstLSN: LogSequenceNumber) -> String {
        "wal-" + paddedDecimal(firstLSN) + ".log"
    }

    static func snapshotFileName(lsn: LogSequenceNumber) -> String {
        "snapshot-" + paddedDecimal(lsn) + ".snap"
    }

    static func parseSegmentFileName(_ name: String) -> LogSequenceNumber? {
        parseNumber(name, prefix: "wal-", suffix: ".log")
    }

    static func parseSnapshotFileName(_ name: String) -> LogSequenceNumber? {
        parseNumber(name, prefix: "snapshot-", suffix: ".snap")
    }

    /// 20 digits hold any UInt64, so names sort like their numbers.
    static func paddedDecimal(_ value: UInt64) -> String {
        let digits = String(value)
        return String(repeating: "0", count: 20 - digits.count) + digits
    }

    private static func parseNumber(_ name: String, prefix: String, suffix: String) -> UInt64? {
        guard name.hasPrefix(prefix), name.hasSuffix(suffix) else { return nil }
        let middle = name.dropFirst(prefix.count).dropLast(suffix.count)
        guard middle.count == 20, middle.allSatisfy({ $0 >= "0" && $0 <= "9" }) else { return nil }
        return UInt64(middle)
    }

    // MARK: FORMAT file

    static func formatFileContents(version: UInt8) -> [UInt8] {
        Array((formatFilePrefix + String(version) + "\n").utf8)
    }

    /// The version a FORMAT file names, or nil if it is not a FORMAT file at all.
    static func parseFormatFile(_ bytes: [UInt8]) -> UInt8? {
        guard let text = String(validating: bytes, as: UTF8.self), text.hasPrefix(formatFilePrefix) else { return nil }
        var number = text.dropFirst(formatFilePrefix.count)
        while number.last == "\n" || number.last == " " { number.removeLast() }
        // Versions start at 1: a 0 is not a format, it is damage.
        guard let version = UInt8(number), version > 0 else { return nil }
        return version
    }

    // MARK: Checksums and integers

    /// zlib's CRC-32, continued from `seed`. zlib resets on a null buffer, so empty input returns the seed.
    static func checksum(_ bytes: ArraySlice<UInt8>, seed: UInt32 = 0) -> UInt32 {
        guard !bytes.isEmpty else { return seed }
        return bytes.withUnsafeBufferPointer { buffer in
            UInt32(truncatingIfNeeded: crc32(uLong(seed), buffer.baseAddress, uInt(buffer.count)))
        }
    }

    static func appendUInt32(_ value: UInt32, to bytes: inout [UInt8]) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    static func appendUInt64(_ value: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    static func readUInt32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        var value: UInt32 = 0
        for index in offset..<(offset + 4) { value = value << 8 | UInt32(bytes[index]) }
        return value
    }

    static func readUInt64(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in offset..<(offset + 8) { value = value << 8 | UInt64(bytes[index]) }
        return value
    }

    // MARK: Segment header and records

    static func segmentHeader(firstLSN: LogSequenceNumber) -> [UInt8] {
        var bytes = segmentMagic
        bytes.append(version)
        bytes.append(contentsOf: [0, 0, 0])
        appendUInt64(firstLSN, to: &bytes)
        appendUInt32(checksum(bytes[8..<20]), to: &bytes)
        precondition(bytes.count == segmentHeaderBytes)
        return bytes
    }

    /// The CRC covers the length, the LSN and the payload: every field but itself.
    static func recordChecksum(lengthAndLSN header: ArraySlice<UInt8>, payload: ArraySlice<UInt8>) -> UInt32 {
        let start = header.startIndex
        var crc = checksum(header[start..<(start + 4)])
        crc = checksum(header[(start + 8)..<(start + 16)], seed: crc)
        return checksum(payload, seed: crc)
    }

    static func appendRecord(lsn: LogSequenceNumber, payload: [UInt8], to bytes: inout [UInt8]) {
        let start = bytes.count
        appendUInt32(UInt32(payload.count), to: &bytes)
        appendUInt32(0, to: &bytes)
        appendUInt64(lsn, to: &bytes)
        let crc = recordChecksum(lengthAndLSN: bytes[start..<(start + 16)], payload: payload[...])
        bytes[start + 4] = UInt8(truncatingIfNeeded: crc >> 24)
        bytes[start + 5] = UInt8(truncatingIfNeeded: crc >> 16)
        bytes[start + 6] = UInt8(truncatingIfNeeded: crc >> 8)
        bytes[start + 7] = UInt8(truncatingIfNeeded: crc)
        bytes.append(contentsOf: payload)
    }

    // MARK: Snapshot header

    /// The header of a payload of `payloadLength` bytes whose own CRC-32 (from 0) is
    /// `payloadChecksum`: the payload is streamed before its header is known (SnapshotWriter), so
    /// the header's CRC over bytes 8..<28 and the payload is zlib's `crc32_combine` of the two.
    static func snapshotHeader(lsn: LogSequenceNumber, payloadLength: UInt64, payloadChecksum: UInt32) -> [UInt8] {
        var bytes = snapshotMagic
        bytes.append(version)
        bytes.append(contentsOf: [0, 0, 0])
        appendUInt64(lsn, to: &bytes)
        appendUInt64(payloadLength, to: &bytes)
        let crc = crc32_combine(uLong(checksum(bytes[8..<28])), uLong(payloadChecksum), .init(payloadLength))
        appendUInt32(UInt32(truncatingIfNeeded: crc), to: &bytes)
        precondition(bytes.count == snapshotHeaderBytes)
        return bytes
    }
}
