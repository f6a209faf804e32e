/// The release this build belongs to: `--version` of `baton` and `batond`, batond's `hello` and its
/// metrics all say it.
public enum BatonVersion {
    public static let release = "0.2.0"
    /// The name batond gives in its `hello` reply.
    public static var serverName: String { "batond \(release)" }
}
