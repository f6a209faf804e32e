import BatonProtocol

/// Where the namespace lives: `zookeeper://h1:2181,h2:2181,h3:2181/chroot`. The chroot (optional,
/// default none) is the ZooKeeper path under which Baton's whole namespace lives; it is created if missing.
public struct ZooKeeperAddress: Sendable, Equatable, CustomStringConvertible {
    /// The C client's host list, e.g. "127.0.0.1:2181,127.0.0.1:2182".
    public var hosts: String
    /// "" (the ZooKeeper root) or an absolute path without a trailing slash, e.g. "/baton".
    public var chroot: String

    public static let scheme = "zookeeper://"
    /// The C client's limit on the host list is generous; ours keeps command lines sane.
    public static let hostsBytesMax = 4_096

    public init(hosts: String, chroot: String = "") {
        self.hosts = hosts
        self.chroot = chroot
    }

    /// Parses `zookeeper://hosts[/chroot]`; nil with a reason in `error` otherwise.
    public init(parsing text: String) throws(ReplyError) {
        guard text.hasPrefix(ZooKeeperAddress.scheme) else {
            throw ReplyError(.invalidArgument, "a ZooKeeper store is zookeeper://host:port[,host:port...][/chroot]")
        }
        let rest = text.dropFirst(ZooKeeperAddress.scheme.count)
        let slash = rest.firstIndex(of: "/")
        let hosts = String(slash.map { rest[..<$0] } ?? rest)
        var chroot = slash.map { String(rest[$0...]) } ?? ""
        while chroot.hasSuffix("/") { chroot.removeLast() }
        guard !hosts.isEmpty, hosts.utf8.count <= ZooKeeperAddress.hostsBytesMax else {
            throw ReplyError(.invalidArgument, "zookeeper:// needs at least one host:port")
        }
        for host in hosts.split(separator: ",", omittingEmptySubsequences: false) {
            guard let colon = host.lastIndex(of: ":"), colon != host.startIndex,
                  let port = UInt16(host[host.index(after: colon)...]), port > 0 else {
                throw ReplyError(.invalidArgument, "zookeeper:// host '\(host)' is not host:port")
            }
        }
        if !chroot.isEmpty {
            guard NodePath.isValidChroot(chroot) else {
                throw ReplyError(.invalidPath, "zookeeper:// chroot '\(chroot)' is not an absolute path")
            }
        }
        self.init(hosts: hosts, chroot: chroot)
    }

    public var description: String { ZooKeeperAddress.scheme + hosts + chroot }
}

extension NodePath {
    /// A chroot: absolute, components non-empty and not "." or "..", no NUL.
    static func isValidChroot(_ path: String) -> Bool {
        guard path.hasPrefix("/"), path.count > 1, !path.utf8.contains(0) else { return false }
        return path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).allSatisfy {
            !$0.isEmpty && $0 != "." && $0 != ".."
        }
    }
}
