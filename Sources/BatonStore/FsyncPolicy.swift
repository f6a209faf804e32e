/// When the log forces its writes to stable storage (`--fsync`). What each can lose: docs/STORAGE.md.
public enum FsyncPolicy: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Every append is written and fsynced before `append` returns.
    case always
    /// Group commit: `commit()` writes and fsyncs once for every append since the previous commit.
    case batch
    /// `commit()` hands the writes to the kernel and never waits for the disk.
    case none

    /// Parses the command-line spelling: "always", "batch" or "none".
    public init?(parsing text: String) {
        self.init(rawValue: text)
    }

    public var description: String { rawValue }
}
