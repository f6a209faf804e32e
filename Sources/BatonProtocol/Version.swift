/// The release this build belongs to: `--version` of `baton` and `batond`, batond's `hello` and its
/// metrics all say it, with the git revision (`BatonRevision.current`, in its own module so that a
/// new commit recompiles only the executables).
public enum BatonVersion {
    public static let release = "0.2.0"
    /// "0.2.0 (abc1234)".
    public static func description(revision: String) -> String { "\(release) (\(revision))" }
    /// The name batond gives in its `hello` reply (free text, PROTOCOL.md §4.2): "batond 0.2.0 (abc1234)".
    public static func serverName(revision: String) -> String { "batond \(description(revision: revision))" }
    /// The name of an engine not told its revision (batond sets `EngineConfiguration.serverName`).
    public static var serverName: String { "batond \(release)" }
}
