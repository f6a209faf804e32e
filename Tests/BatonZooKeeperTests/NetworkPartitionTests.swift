import BatonProtocol
import BatonTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A network namespace joined to the host by a veth pair, with private addresses on the pair only:
/// a process run in it reaches the host side's address and nothing else. `cut()` takes the link down
/// (packets vanish, no reset: a real partition); teardown deletes the namespace and the pair.
final class NetworkNamespace {
    let name: String
    let hostInterface: String
    let hostAddress: String
    let namespaceAddress: String
    private var created = false

    static var ipPath: String? {
        ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    init() throws {
        guard let ip = Self.ipPath else { throw TestSupportError.system("no ip command") }
        // Names unique per run (interface names: at most 15 bytes); a /30 in 10.213.0.0/16.
        let tag = String(UInt32(truncatingIfNeeded: getpid()) % 100_000, radix: 16) + String(UInt32.random(in: 0..<4_096), radix: 16)
        name = "baton-" + tag
        hostInterface = "bth" + tag
        let subnet = UInt32.random(in: 0..<16_384)
        let base = "10.213.\(subnet / 64)."
        hostAddress = base + "\((subnet % 64) * 4 + 1)"
        namespaceAddress = base + "\((subnet % 64) * 4 + 2)"
        let peer = "btn" + tag
        do {
            try Self.run(ip, "netns", "add", name)
            created = true
            try Self.run(ip, "link", "add", hostInterface, "type", "veth", "peer", "name", peer)
            try Self.run(ip, "link", "set", peer, "netns", name)
            try Self.run(ip, "addr", "add", hostAddress + "/30", "dev", hostInterface)
            try Self.run(ip, "link", "set", hostInterface, "up")
            try Self.run(ip, "netns", "exec", name, ip, "addr", "add", namespaceAddress + "/30", "dev", peer)
            try Self.run(ip, "netns", "exec", name, ip, "link", "set", peer, "up")
            try Self.run(ip, "netns", "exec", name, ip, "link", "set", "lo", "up")
        } catch {
            tearDown()
            throw error
        }
    }

    deinit { tearDown() }

    /// Runs a command in the namespace (it execs: the pid is the command's).
    var launcher: [String] { [Self.ipPath!, "netns", "exec", name] }

    func cut() throws { try Self.run(Self.ipPath!, "link", "set", hostInterface, "down") }

    func heal() throws { try Self.run(Self.ipPath!, "link", "set", hostInterface, "up") }

    func tearDown() {
        guard created, let ip = Self.ipPath else { return }
        created = false
        // Deleting one end deletes the pair; deleting the namespace deletes the end inside it.
        try? Self.run(ip, "link", "delete", hostInterface)
        try? Self.run(ip, "netns", "delete", name)
    }

    @discardableResult
    static func run(_ arguments: String...) throws -> String {
        try Subprocess.check(arguments[0], Array(arguments.dropFirst()))
    }
}

/// A sidecar cut off from the ensemble by a real partition (its network namespace's link goes down).
final class NetworkPartitionTests: XCTestCase {
    func testSidecarCutOffInANetworkNamespaceIsSuspendedThenLostAndAWaiterElsewhereIsGranted() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root to create a network namespace (ip netns add); CI runs as root") }
        guard NetworkNamespace.ipPath != nil else { throw XCTSkip("no ip command (iproute2)") }
        let network = try NetworkNamespace()
        defer { network.tearDown() }
        // Members take clients on the host end of the pair: reachable from the host and the namespace.
        let ensemble = try ZooKeeperEnsemble(members: 3, clientAddress: network.hostAddress)
        let store = "zookeeper://\(ensemble.connectString)/partition"
        func sidecar(launcher: [String]) throws -> TestDaemon {
            try TestDaemon.zooKeeperSidecar(store: store, sessionTimeoutMilliseconds: 3_000, logLevel: "info", launcher: launcher)
        }
        let a = try sidecar(launcher: network.launcher) // its Unix socket is a file: reachable from here
        let b = try sidecar(launcher: [])

        let holder = try a.connect()
        try holder.handshake(clientName: "cut-off", sessionTimeoutMilliseconds: 60_000)
        guard case .granted(let node, let token) = try holder.callSuccessfully(.acquire(LockRequest(path: "/locks/p"))) else {
            return XCTFail("acquire")
        }
        let waiter = try b.connect()
        try waiter.handshake(clientName: "elsewhere")
        let acquireID = try waiter.send(.acquire(LockRequest(path: "/locks/p")))
        XCTAssertFalse(waiter.isReadable(timeoutSeconds: 0.3), "held on a: the waiter on b waits")

        let cutAt = Date()
        try network.cut()
        XCTAssertEqual(try holder.nextEvent(timeoutSeconds: 20), .lockSuspended(node: node, token: token))
        let suspendedAfter = Date().timeIntervalSince(cutAt)
        // Never two holders: by the time the waiter on b is granted, the holder on a has been told
        // lost (the event is read, or waiting on its socket).
        var lostAt: Date?
        let lostDeadline = Date().addingTimeInterval(30)
        while lostAt == nil {
            if waiter.isReadable(timeoutSeconds: 0) && !holder.isReadable(timeoutSeconds: 0) {
                return XCTFail("the waiter on b was granted while the holder on a had not been told lost")
            }
            if holder.isReadable(timeoutSeconds: 0.01) {
                XCTAssertEqual(try holder.nextEvent(timeoutSeconds: 1), .lockLost(node: node, token: token, reason: .backendSessionLost))
                lostAt = Date()
            }
            guard Date() < lostDeadline else { return XCTFail("the holder was never told lost") }
        }
        guard case .sessionExpired = try holder.nextEvent(timeoutSeconds: 5) else { return XCTFail("the local session ends") }
        let reply = try waiter.receiveReply(timeoutSeconds: 30)
        let grantedAt = Date()
        XCTAssertEqual(reply.requestID, acquireID)
        guard case .success(.granted(_, let next)) = reply.result else { return XCTFail("\(reply.result)") }
        XCTAssertGreaterThan(next, token)
        print("partition (session timeout 3000 ms): suspended after \(Int(suspendedAfter * 1_000)) ms, lost after "
              + "\(Int(lostAt!.timeIntervalSince(cutAt) * 1_000)) ms, granted on the other sidecar after \(Int(grantedAt.timeIntervalSince(cutAt) * 1_000)) ms")

        // Healed: a serves again on a new ZooKeeper session, and sees b's hold.
        try network.heal()
        let again = try a.connect()
        try again.handshake(clientName: "again")
        let deadline = Date().addingTimeInterval(30)
        while true {
            if case .success(.tokenStatus(current: true)) = try again.call(.checkToken(path: "/locks/p", token: next)).result { break }
            guard Date() < deadline else { return XCTFail("sidecar a did not serve again: \(a.standardError)") }
            usleep(100_000)
        }
    }
}
