/// The release this build belongs to: `--version` of `baton` and `batond`, batond's `hello` and its
/// metrics all say it.
public enum BatonVersion {
    public static let release = "0.2.0"
    /// The commit this build was made from, abbreviated to 7 hex digits, or "unknown" when built from
    /// a tree with no `.git` (a tarball). Written at build time by the GitRevision plugin
    /// (Plugins/GitRevision) into `GeneratedRevision.swift`.
    public static var revision: String { gitRevision }
    /// What `--version` prints: "0.2.0 (abc1234)".
    public static var description: String { "\(release) (\(revision))" }
    /// The name batond gives in its `hello` reply (free text, PROTOCOL.md §4.2).
    public static var serverName: String { "batond \(description)" }
}
