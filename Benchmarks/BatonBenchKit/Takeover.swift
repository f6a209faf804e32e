import Foundation

/// One takeover sample set: a holder process is killed with SIGKILL while a waiter in this process
/// waits; the time from the kill to the waiter holding.
public struct TakeoverResult: Sendable {
    public var samplesNanoseconds: [UInt64]
    /// What the holder's session or lease was set to, as the peer reported it (e.g. "session 4000 ms").
    public var holderSetting: String
    public var medianNanoseconds: UInt64 {
        let sorted = samplesNanoseconds.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }
}

/// The holder side (hidden subcommand `holder`): acquire, tell the parent, then wait to be killed.
public func holdUntilKilled(target: Target, lock: String, options: ClientOptions) throws(BenchError) -> Never {
    let client = try makeClient(target, options: options)
    _ = try client.acquire(lock)
    var detail = "-"
    if let zookeeper = client as? ZooKeeperLockClient {
        detail = "session \(zookeeper.sessionTimeoutMilliseconds) ms"
        // The single-threaded client only heartbeats while driven: keep driving it until killed.
        writeLine("held \(detail)")
        while true { try zookeeper.run { _ in false } }
    }
    if let etcd = client as? EtcdLockClient { detail = "lease TTL \(etcd.grantedTTLSeconds) s" }
    if case .redis = target { detail = "PX \(options.redisTTLMilliseconds) ms" }
    if case .baton(let endpoint) = target {
        if case .unix = endpoint { detail = "Unix socket: session ends on disconnect" } else {
            detail = "session \(options.batonSessionTimeoutMilliseconds) ms"
        }
    }
    writeLine("held \(detail)")
    // Keep the connection open (an optimised build would otherwise end the client after its last use).
    while true { withExtendedLifetime(client) { _ = pause() } }
}

/// The holder's settings: the shortest session or TTL each system accepts.
public func shortestHoldOptions(_ base: ClientOptions) -> ClientOptions {
    var options = base
    // The server minimum is 2 x tickTime = 4 s; the C client also uses the request as its connect timeout.
    options.zookeeperSessionTimeoutMilliseconds = 4_000
    options.etcdLeaseTTLSeconds = 1                  // raised to etcd's minimum lease TTL
    options.batonSessionTimeoutMilliseconds = 200    // batond's minimum (Limits.sessionTimeoutMillisecondsMin)
    return options
}

/// The holder runs against `target`, the waiter against `waiterTarget` (another sidecar or member; default the same).
public func runTakeover(target: Target, waiterTarget: Target? = nil, samples: Int, options: ClientOptions, lockPrefix: String,
                        executable: String) throws(BenchError) -> TakeoverResult {
    var results: [UInt64] = []
    var holderSetting = "-"
    let holderOptions = shortestHoldOptions(options)
    for sample in 0..<samples {
        let lock = "\(lockPrefix)-\(sample)"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["holder", "--target", target.argument, "--lock", lock] + holderOptions.arguments
        let output = Pipe()
        process.standardOutput = output
        do { try process.run() } catch { throw BenchError("cannot start holder \(executable): \(error)") }
        let line = readLine(output.fileHandleForReading)
        guard line.hasPrefix("held") else {
            process.terminate()
            throw BenchError("holder for \(target) did not report a hold: \(line)")
        }
        holderSetting = String(line.dropFirst(5))
        let (granted, finished) = startWaiter(try makeClient(waiterTarget ?? target, options: options), lock: lock)
        // Let the waiter queue (or start polling) behind the holder before the holder dies.
        MonotonicClock.sleep(microseconds: 50_000)
        let killed = MonotonicClock.nanoseconds()
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let deadline = killed + 60_000_000_000
        while granted.elements.isEmpty && MonotonicClock.nanoseconds() < deadline { MonotonicClock.sleep(microseconds: 100) }
        guard let outcome = granted.elements.first else { throw BenchError("\(target): waiter not granted 60 s after the kill") }
        while !finished.isSet && MonotonicClock.nanoseconds() < deadline { MonotonicClock.sleep(microseconds: 100) }
        switch outcome {
        case .success(let at):
            guard at >= killed else { throw BenchError("\(target): waiter held before the holder was killed") }
            results.append(at - killed)
        case .failure(let error): throw error
        }
    }
    return TakeoverResult(samplesNanoseconds: results, holderSetting: holderSetting)
}

/// Starts the waiter of a takeover: a thread that acquires `lock` through `client`, records when it
/// held (or why not) in `granted`, releases, finishes the client and sets `finished`. The client is
/// used by that thread alone, to the end (one connection, one caller).
func startWaiter(_ client: LockClient, lock: String) -> (granted: Collector<Result<UInt64, BenchError>>, finished: AtomicFlag) {
    let waiter = UncheckedBox(client)
    let granted = Collector<Result<UInt64, BenchError>>()
    let finished = AtomicFlag()
    let waiting = Thread {
        do {
            let hold = try waiter.value.acquire(lock)
            granted.append(.success(MonotonicClock.nanoseconds()))
            try waiter.value.release(lock, hold: hold)
        } catch {
            granted.append(.failure(error as! BenchError))
        }
        waiter.value.finish()
        finished.set()
    }
    waiting.start()
    return (granted, finished)
}

/// Writes a line to standard output unbuffered (the parent reads it through a pipe).
func writeLine(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

func readLine(_ handle: FileHandle) -> String {
    var bytes: [UInt8] = []
    while true {
        let chunk = handle.readData(ofLength: 1)
        guard let byte = chunk.first, byte != 10 else { break }
        bytes.append(byte)
    }
    return String(decoding: bytes, as: UTF8.self)
}

extension ClientOptions {
    /// The command-line form, for child processes.
    public var arguments: [String] {
        ["--redis-ttl-ms", String(redisTTLMilliseconds), "--redis-backoff-us", String(redisBackoffMicroseconds),
         "--zookeeper-session-ms", String(zookeeperSessionTimeoutMilliseconds), "--etcd-lease-s", String(etcdLeaseTTLSeconds),
         "--baton-session-ms", String(batonSessionTimeoutMilliseconds)]
    }
}
