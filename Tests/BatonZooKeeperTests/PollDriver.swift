import BatonTestSupport
import BatonZooKeeper
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Drives ZooKeeper clients with poll(2) on the test's thread, as the daemon's loop does with
/// uv_poll and uv_timer: wait for what `interest()` names, then `process`.
enum PollDriver {
    struct Timeout: Error, CustomStringConvertible {
        var what: String
        var description: String { "timed out waiting for \(what)" }
    }

    /// Runs one round: waits at most `capMilliseconds` for any client's descriptor or timeout.
    static func step(_ clients: [ZooKeeperClient], capMilliseconds: Int = 50) {
        let interests = clients.map { $0.interest() }
        var entries = interests.map { interest -> pollfd in
            var entry = pollfd(fd: interest.descriptor, events: 0, revents: 0)
            if interest.readable { entry.events |= Int16(POLLIN) }
            if interest.writable { entry.events |= Int16(POLLOUT) }
            return entry
        }
        let wait = min(capMilliseconds, interests.map(\.timeoutMilliseconds).min() ?? capMilliseconds)
        _ = poll(&entries, nfds_t(entries.count), Int32(wait))
        for (client, entry) in zip(clients, entries) {
            let readable = entry.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0
            let writable = entry.revents & Int16(POLLOUT) != 0
            client.process(readable: readable, writable: writable)
        }
    }

    /// Steps until `done` holds; throws after `timeoutSeconds`.
    static func run(_ clients: [ZooKeeperClient], _ what: String, timeoutSeconds: Double = 30,
                    until done: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while !done() {
            guard Date() < deadline else { throw Timeout(what: what) }
            step(clients)
        }
    }

    /// Runs one asynchronous call to completion and returns its result.
    static func await<T>(_ clients: [ZooKeeperClient], _ what: String,
                         _ call: (@escaping (T) -> Void) -> Void) throws -> T {
        var result: T?
        call { result = $0 }
        try run(clients, what) { result != nil }
        return result!
    }
}

/// A connected client on `ensemble` (all members, or only `member`), its session events recorded.
final class TestClient {
    let client: ZooKeeperClient
    var events: [ZooKeeperSessionEvent] = []

    init(_ ensemble: ZooKeeperEnsemble, chroot: String = "", member: Int? = nil,
         sessionTimeoutMilliseconds: Int32 = 4_000, digest: String? = nil) throws {
        let hosts = member.map { "127.0.0.1:\(ensemble.member($0).clientPort)" } ?? ensemble.connectString
        client = try ZooKeeperClient(ZooKeeperConfiguration(address: ZooKeeperAddress(hosts: hosts, chroot: chroot),
                                                            sessionTimeoutMilliseconds: sessionTimeoutMilliseconds, digest: digest))
        client.sessionEvents = { [weak self] in self?.events.append($0) }
        try PollDriver.run([client], "connection") { client.state == .connected || client.state == .dead }
        guard client.state == .connected else { throw PollDriver.Timeout(what: "connection: \(events)") }
    }

    func await<T>(_ what: String, _ call: (@escaping (T) -> Void) -> Void) throws -> T {
        try PollDriver.await([client], what, call)
    }
}
