import Foundation

/// Raises this process's open-file limit to its hard limit (10,000 waiters are 10,000 sockets).
@discardableResult
public func raiseDescriptorLimit() -> UInt64 {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = limit.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    return UInt64(limit.rlim_cur)
}

/// The open-file limit of another process, from /proc/PID/limits.
public func descriptorLimit(processID: Int32) -> UInt64? {
    guard let text = try? String(contentsOfFile: "/proc/\(processID)/limits", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("Max open files") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        if fields.count >= 4 { return UInt64(fields[3]) }
    }
    return nil
}

/// A short random suffix so lock names of one run never meet those of another.
public func uniqueSuffix() -> String {
    String(UInt32.random(in: 0...UInt32.max), radix: 36)
}

/// This executable, for re-executing itself as a holder or echo process.
public func selfExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

public func formatMicroseconds(_ nanoseconds: UInt64) -> String {
    let value = Double(nanoseconds) / 1_000
    if value >= 100 { return String(format: "%.0f", value) }
    if value >= 10 { return String(format: "%.1f", value) }
    return String(format: "%.2f", value)
}

/// CPU time a process (all its threads) has used, in nanoseconds, from /proc/PID/task/*/schedstat
/// (nanosecond resolution, unlike utime+stime in clock ticks).
public func processCPUNanoseconds(_ processID: Int32) -> UInt64? {
    let directory = "/proc/\(processID)/task"
    guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return nil }
    var total: UInt64 = 0
    for task in tasks {
        guard let text = try? String(contentsOfFile: "\(directory)/\(task)/schedstat", encoding: .utf8),
              let first = text.split(separator: " ").first, let value = UInt64(first) else { continue }
        total += value
    }
    return total
}

/// utime+stime of a process from /proc/PID/stat (fields 14 and 15, in clock ticks), in nanoseconds.
/// Coarser than schedstat (10 ms ticks) but it includes threads that have exited.
public func processStatCPUNanoseconds(_ processID: Int32) -> UInt64? {
    guard let text = try? String(contentsOfFile: "/proc/\(processID)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { return nil }
    // After "pid (comm)" the fields start at 3 (state); utime and stime are fields 14 and 15.
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
    let ticksPerSecond = UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
    return (user + system) * (1_000_000_000 / ticksPerSecond)
}

/// This process's CPU time, all its threads (ended ones included), from getrusage.
public func ownCPUNanoseconds() -> UInt64 {
    var usage = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
    func nanoseconds(_ time: timeval) -> UInt64 { UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_usec) * 1_000 }
    return nanoseconds(usage.ru_utime) + nanoseconds(usage.ru_stime)
}

/// CPU time of several server processes together (an ensemble, sidecars); nil if any is unknown.
public func processCPUNanoseconds(_ processIDs: [Int32], _ read: (Int32) -> UInt64? = processCPUNanoseconds) -> UInt64? {
    guard !processIDs.isEmpty else { return nil }
    var total: UInt64 = 0
    for processID in processIDs {
        guard let value = read(processID) else { return nil }
        total += value
    }
    return total
}

/// Server CPU spent over a measured interval: sample before, sample after, divide by operations.
/// The figure is schedstat's (nanoseconds, live threads); utime+stime is read too, and where it
/// exceeds schedstat's by more than its tick resolution (threads that ended in the interval, whose
/// time schedstat no longer lists), it is used instead.
public struct CPUMeter: Sendable {
    public let processIDs: [Int32]
    let before: UInt64?
    let statBefore: UInt64?
    public init(_ processIDs: [Int32]) {
        self.processIDs = processIDs
        before = processCPUNanoseconds(processIDs)
        statBefore = processCPUNanoseconds(processIDs, processStatCPUNanoseconds)
    }
    /// Nanoseconds of server CPU since `init`; nil when no server process is known.
    public func elapsed() -> UInt64? {
        guard let before, let after = processCPUNanoseconds(processIDs), after >= before else { return nil }
        let precise = after - before
        if let statBefore, let statAfter = processCPUNanoseconds(processIDs, processStatCPUNanoseconds), statAfter >= statBefore {
            let ticks = statAfter - statBefore
            // Two samples, each up to a tick (10 ms) per process off.
            let resolution = UInt64(2 * processIDs.count) * 10_000_000
            if ticks > precise + precise / 10 + resolution { return ticks }
        }
        return precise
    }
}

/// Resident memory of a process in bytes (VmRSS).
public func residentBytes(_ processID: Int32) -> UInt64? {
    guard let text = try? String(contentsOfFile: "/proc/\(processID)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        if fields.count >= 2, let kilobytes = UInt64(fields[1]) { return kilobytes * 1_024 }
    }
    return nil
}
