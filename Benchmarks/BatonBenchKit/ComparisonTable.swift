/// The comparison's one markdown table: rows are scenarios, columns the systems, and the ratio of
/// Baton (Unix, else TCP) to the best peer in that row.
public enum Column: Int, CaseIterable, Sendable {
    case batonUnix, batonTCP, batonInMemory, redis, redisAlways, redisEverysec, zookeeper, etcd
    /// Multi-host: Baton's sidecars over a ZooKeeper ensemble, the direct recipe on that ensemble, an etcd cluster.
    case batonSidecars, zookeeperEnsemble, etcdCluster

    public var title: String {
        switch self {
        case .batonUnix: return "Baton (Unix)"
        case .batonTCP: return "Baton (TCP)"
        case .batonInMemory: return "Baton --in-memory"
        case .redis: return "Redis"
        case .redisAlways: return "Redis AOF always"
        case .redisEverysec: return "Redis AOF everysec"
        case .zookeeper: return "ZooKeeper"
        case .etcd: return "etcd"
        case .batonSidecars: return "Baton, 3 sidecars over ZooKeeper"
        case .zookeeperEnsemble: return "ZooKeeper recipe, 3 members"
        case .etcdCluster: return "etcd, 3 members"
        }
    }
    public var isBaton: Bool { self == .batonUnix || self == .batonTCP || self == .batonInMemory || self == .batonSidecars }
    /// Columns of the lock table (the write table has its own: `writeColumns`).
    public static let lockColumns: [Column] = [.batonUnix, .batonTCP, .redis, .zookeeper, .etcd]
    public static let writeColumns: [Column] = [.batonUnix, .batonInMemory, .redis, .redisAlways, .redisEverysec]
    public static let multiHostColumns: [Column] = [.batonSidecars, .zookeeperEnsemble, .etcdCluster]
}

public struct TableCell: Sendable {
    public var text: String
    /// The number the ratio uses; nil when the cell has none.
    public var value: Double?
    public init(_ text: String, value: Double? = nil) {
        self.text = text
        self.value = value
    }
}

public struct TableRow: Sendable {
    public var scenario: String
    public var higherIsBetter: Bool?
    public var cells: [Column: TableCell] = [:]
    /// Replaces the Baton ÷ best peer ratio where a row compares something else (stated in the text).
    public var ratioText: String?
    public init(_ scenario: String, higherIsBetter: Bool?) {
        self.scenario = scenario
        self.higherIsBetter = higherIsBetter
    }

    /// Baton's value divided by the best peer's (best = highest or lowest as the row says).
    public var ratio: String {
        if let ratioText { return ratioText }
        guard let higherIsBetter else { return "" }
        guard let baton = cells[.batonUnix]?.value ?? cells[.batonTCP]?.value ?? cells[.batonSidecars]?.value else { return "" }
        let peers = [Column.redis, .zookeeper, .etcd, .zookeeperEnsemble, .etcdCluster].compactMap { cells[$0]?.value }
        guard let best = higherIsBetter ? peers.max() : peers.min(), best > 0 else { return "" }
        return formatRatio(baton / best) + (higherIsBetter ? " (higher is better)" : " (lower is better)")
    }
}

func formatRatio(_ value: Double) -> String {
    if value >= 100 { return String(format: "%.0f", value) }
    if value >= 10 { return String(format: "%.1f", value) }
    return String(format: "%.2f", value)
}

public func formatCount(_ value: Double) -> String {
    if value >= 1_000_000 { return String(format: "%.2fM", value / 1_000_000) }
    if value >= 10_000 { return String(format: "%.0fk", value / 1_000) }
    if value >= 1_000 { return String(format: "%.1fk", value / 1_000) }
    if value >= 10 { return String(format: "%.0f", value) }
    return String(format: "%.2f", value)
}

public func formatMilliseconds(_ nanoseconds: UInt64) -> String {
    let value = Double(nanoseconds) / 1e6
    if value >= 100 { return String(format: "%.0f", value) }
    if value >= 1 { return String(format: "%.1f", value) }
    return String(format: "%.3f", value)
}

public func formatBytes(_ bytes: UInt64) -> String {
    String(format: "%.1f MiB", Double(bytes) / 1_048_576)
}

public func renderTable(_ rows: [TableRow], columns: [Column], ratioTitle: String = "Baton / best peer") -> String {
    var lines: [String] = []
    lines.append("| Scenario | " + columns.map(\.title).joined(separator: " | ") + " | \(ratioTitle) |")
    lines.append("|---|" + columns.map { _ in "---:" }.joined(separator: "|") + "|---:|")
    for row in rows {
        let cells = columns.map { row.cells[$0]?.text ?? "—" }
        lines.append("| \(row.scenario) | " + cells.joined(separator: " | ") + " | \(row.ratio) |")
    }
    return lines.joined(separator: "\n")
}
