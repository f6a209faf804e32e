import Foundation
import BatonProtocol
import Histogram

/// W waiters queued on one lock; each release hands it to the next. Measures the release-to-grant
/// time, the server CPU per release, and how many clients each release woke.
public struct HerdResult: Sendable {
    public var waiters: Int
    public var releases: Int
    /// From sending the release to the next waiter holding.
    public var handoff: LatencySummary
    /// Server CPU per release, nanoseconds (nil when the server's process is not known).
    public var serverCPUNanosecondsPerRelease: Double?
    /// Clients that received anything per release (Baton), watch events per release (ZooKeeper),
    /// failed SET NX tries per release (Redis); nil where the client cannot see it (etcd).
    public var wokenPerRelease: Double?
}

/// Baton: all waiters on one thread, their sockets in one epoll set, so 10,000 waiters cost 10,000
/// sockets and not 10,000 threads. A herd smaller than `requestedReleases` is set up again, on a
/// fresh lock each time, until that many releases were measured: ten releases are ~0.2 ms of server
/// CPU, which one scheduler event moves by tens of per cent, and the 10,000 / 10 ratio needs both
/// figures to hold. Only the release loops are metered; each run's sessions end with it.
public func runBatonHerd(endpoint: Endpoint, waiters: Int, releases requestedReleases: Int, serverProcessIDs: [Int32],
                         options: ClientOptions, lock: String) throws(BenchError) -> HerdResult {
    precondition(waiters > 0 && requestedReleases > 0)
    var histogram = makeLatencyHistogram()
    var serverCPU: UInt64? = 0
    var woken = 0
    var releases = 0
    var run = 0
    while releases < requestedReleases {
        let part = try runBatonHerdOnce(endpoint: endpoint, waiters: waiters, releases: requestedReleases - releases,
                                        serverProcessIDs: serverProcessIDs, options: options,
                                        lock: run == 0 ? lock : "\(lock)-\(run)", histogram: &histogram)
        if let cpu = part.serverCPU, let total = serverCPU { serverCPU = total + cpu } else { serverCPU = nil }
        woken += part.woken
        releases += part.releases
        run += 1
    }
    var cpuPerRelease: Double?
    if let serverCPU { cpuPerRelease = Double(serverCPU) / Double(releases) }
    return HerdResult(waiters: waiters, releases: releases, handoff: LatencySummary(histogram),
                      serverCPUNanosecondsPerRelease: cpuPerRelease, wokenPerRelease: Double(woken) / Double(releases))
}

/// One herd of `waiters` behind a holder, `min(requestedReleases, waiters)` releases measured into
/// `histogram`; returns their server CPU and how many clients received anything.
private func runBatonHerdOnce(endpoint: Endpoint, waiters: Int, releases requestedReleases: Int, serverProcessIDs: [Int32],
                              options: ClientOptions, lock: String,
                              histogram: inout Histogram<UInt64>) throws(BenchError) -> (releases: Int, serverCPU: UInt64?, woken: Int) {
    let releases = min(requestedReleases, waiters)
    let first = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                    clientName: "herd-holder")
    var holderHold = try first.acquire(lock)
    var clients: [BatonLockClient] = [first]
    clients.reserveCapacity(waiters + 1)
    for index in 0..<waiters {
        let client = try BatonLockClient(endpoint: endpoint, sessionTimeoutMilliseconds: options.batonSessionTimeoutMilliseconds,
                                         clientName: "herd-\(index)", bufferBytes: 1_024)
        try client.send(.acquire(LockRequest(path: lock)))
        clients.append(client)
    }
    // Every waiter queued: the lock shows W+1 entries, in grant order (FIFO). Knowing the order lets
    // the driver block on the next waiter's socket alone, so the figure does not grow with a poll
    // over W sockets; a release that woke anyone else is caught by the sweep at the end.
    var order: [Int] = []
    let bySession = Dictionary(uniqueKeysWithValues: clients.enumerated().map { ($1.sessionID, $0) })
    let queuedDeadline = MonotonicClock.nanoseconds() + 60_000_000_000
    var inspectWorks = true
    while MonotonicClock.nanoseconds() < queuedDeadline {
        guard case .lockEntries(let entries)? = try? first.call(.inspect(path: lock)) else {
            // No inspect: give the waiters time to queue, then find each next holder by poll.
            inspectWorks = false
            MonotonicClock.sleep(microseconds: UInt64(500_000 + waiters * 100))
            break
        }
        if entries.count >= waiters + 1 {
            order = entries.compactMap { bySession[$0.sessionID] }
            break
        }
        MonotonicClock.sleep(microseconds: 10_000)
    }
    if inspectWorks {
        guard order.count == waiters + 1, order.first == 0 else {
            throw BenchError("herd: the lock did not show \(waiters) waiters behind the holder (saw \(order.count) entries)")
        }
    }
    var descriptors = clients.map { pollfd(fd: $0.socket.descriptor, events: Int16(POLLIN), revents: 0) }
    /// Without the queue order: the first waiter whose socket turns readable (a poll over all W).
    func nextByPoll(excluding releaser: Int) throws(BenchError) -> Int {
        while true {
            let count = poll(&descriptors, nfds_t(descriptors.count), 10_000)
            guard count > 0 else { throw BenchError("herd: no grant within 10 s of a release") }
            if let index = descriptors.indices.first(where: { descriptors[$0].revents != 0 && $0 != releaser }) { return index }
        }
    }
    var touched = Set<Int>()
    var holder = 0
    let meter = CPUMeter(serverProcessIDs)
    for round in 0..<releases {
        let releaser = holder
        // Stamped before the send: a client preempted right after its write would stamp after the
        // grant had already come back (a 1 µs hand-off on a busy machine).
        let sent = MonotonicClock.nanoseconds()
        let releaseID = try clients[releaser].send(BatonLockClient.releaseRequest(hold: holderHold))
        let next = inspectWorks ? order[round + 1] : try nextByPoll(excluding: releaser)
        let reply = try clients[next].receiveReply()
        let grantedAt = MonotonicClock.nanoseconds()
        guard case .success(.granted(let node, let token)) = reply.result else {
            throw BenchError("herd: waiter \(next) got \(reply.result) instead of a grant")
        }
        histogram.recordNanoseconds(grantedAt - sent)
        touched.insert(next)
        holderHold = BatonLockClient.hold(node: node, token: token)
        holder = next
        let released = try clients[releaser].receiveReply()
        guard released.requestID == releaseID, case .success = released.result else {
            throw BenchError("herd: release failed: \(released.result)")
        }
    }
    let serverCPU = meter.elapsed()
    // Anything a waiter received beyond its grant shows up here: wait a little and count.
    MonotonicClock.sleep(microseconds: 50_000)
    _ = poll(&descriptors, nfds_t(descriptors.count), 0)
    for (index, entry) in descriptors.enumerated() where entry.revents != 0 || clients[index].socket.hasBufferedBytes {
        touched.insert(index)
    }
    return (releases, serverCPU, touched.count)
}

/// The peers: one thread per waiter with the peer's own recipe; each waiter holds, then releases
/// at once, so the lock walks down the queue. The release-to-grant time is taken from the releasing
/// thread's release call to the next grant.
public func runThreadedHerd(target: Target, waiters: Int, serverProcessIDs: [Int32], options: ClientOptions,
                            lock: String) throws(BenchError) -> HerdResult {
    let holder = try makeClient(target, options: options)
    let holdNode = try holder.acquire(lock)
    let failures = Collector<BenchError>()
    let ready = Collector<Int>()
    let grants = Collector<(at: UInt64, wakeups: Int)>()
    let releasedAt = Collector<UInt64>()
    let done = DispatchGroup()
    let clients = Collector<UncheckedBox<LockClient>>()
    // Connect all waiters first so that connection setup is not counted.
    runThreads(min(waiters, 16)) { worker in
        for index in stride(from: worker, to: waiters, by: 16) {
            do {
                clients.append(UncheckedBox(try makeClient(target, options: options)))
            } catch {
                failures.append(error as! BenchError)
            }
            _ = index
        }
    }
    if let failure = failures.elements.first { throw failure }
    for box in clients.elements {
        done.enter()
        let thread = Thread {
            defer { done.leave() }
            do {
                ready.append(1)
                let hold = try box.value.acquire(lock)
                let at = MonotonicClock.nanoseconds()
                let release = MonotonicClock.nanoseconds()
                releasedAt.append(release)
                try box.value.release(lock, hold: hold)
                grants.append((at, box.value.wakeups))
            } catch {
                failures.append(error as! BenchError)
            }
        }
        thread.stackSize = 256 * 1024
        thread.start()
    }
    while ready.elements.count < waiters { MonotonicClock.sleep(microseconds: 1_000) }
    // Let every waiter queue (or start polling).
    MonotonicClock.sleep(microseconds: UInt64(200_000 + waiters * 200))
    let wakeupsBefore = clients.elements.reduce(0) { $0 + $1.value.wakeups }
    let meter = CPUMeter(serverProcessIDs)
    let start = MonotonicClock.nanoseconds()
    try holder.release(lock, hold: holdNode)
    done.wait()
    let serverCPU = meter.elapsed()
    if let failure = failures.elements.first { throw failure }
    // Grant times in order; each grant's handoff is from the previous release.
    let grantTimes = grants.elements.map(\.at).sorted()
    let releaseTimes = ([start] + releasedAt.elements).sorted()
    var histogram = makeLatencyHistogram()
    for (index, grant) in grantTimes.enumerated() where index < releaseTimes.count {
        histogram.recordNanoseconds(grant >= releaseTimes[index] ? grant - releaseTimes[index] : 0)
    }
    holder.finish()
    for box in clients.elements { box.value.finish() }
    let wakeups = grants.elements.reduce(0) { $0 + $1.wakeups } - wakeupsBefore
    var cpuPerRelease: Double?
    if let serverCPU { cpuPerRelease = Double(serverCPU) / Double(waiters) }
    var woken: Double?
    switch target {
    case .redis, .zookeeper: woken = Double(wakeups) / Double(waiters)
    default: woken = nil
    }
    return HerdResult(waiters: waiters, releases: waiters, handoff: LatencySummary(histogram),
                      serverCPUNanosecondsPerRelease: cpuPerRelease, wokenPerRelease: woken)
}
