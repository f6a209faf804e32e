import BatonProtocol

/// The git commit this build was made from: 7 hex digits, or "unknown" when built from a tree with
/// no `.git` (a tarball). Plugins/GitRevision writes it into `GeneratedRevision.swift` at build time.
/// A module of its own that only the executables (and tests) import: a new commit changes this
/// module alone, so it recompiles `baton` and `batond`, not every module that imports BatonProtocol.
public enum BatonRevision {
    public static var current: String { gitRevision }
    /// What `--version` prints: "0.2.0 (abc1234)".
    public static var version: String { BatonVersion.description(revision: current) }
    /// The name batond gives in its `hello` reply.
    public static var serverName: String { BatonVersion.serverName(revision: current) }
}
