import BatonProtocol

/// A `backup` request the engine accepted: the shell snapshots the namespace, writes `file` and
/// answers with `backupFinished` (PROTOCOL.md §10.8). The engine never touches files.
public struct BackupRequest: Sendable, Equatable {
    public var connection: ConnectionID
    public var requestID: UInt32
    public var file: String
}

extension Engine {
    /// Longest backup file path, in UTF-8 bytes (Linux `PATH_MAX`).
    public static let backupFileBytesMax = 4_096

    /// The file is written on the daemon's host, with the daemon's rights: only a peer on that
    /// host (a Unix connection, which the socket's permissions already admit) may name one.
    func requestBackup(_ file: String, requestID: UInt32, connection: ConnectionID, transport: TransportKind, now: Time) {
        let refusal: ReplyError?
        if transport != .unix {
            refusal = ReplyError(.notAuthorized, "backup is only accepted on the Unix socket: the file is written on the daemon's host")
        } else if !file.hasPrefix("/") || file.utf8.count > Engine.backupFileBytesMax || file.utf8.contains(0) {
            refusal = ReplyError(.invalidArgument, "the backup file must be an absolute path of at most \(Engine.backupFileBytesMax) bytes")
        } else if isShutDown {
            refusal = ReplyError(.shuttingDown, "the server is shutting down")
        } else {
            refusal = nil
        }
        if let refusal {
            reply(connection, requestID, .backup, .failure(refusal), now: now)
            return
        }
        backupRequests.append(BackupRequest(connection: connection, requestID: requestID, file: file))
    }

    /// The shell takes the accepted backups after each request it hands in.
    public func takeBackupRequests() -> [BackupRequest] {
        guard !backupRequests.isEmpty else { return [] }
        defer { backupRequests.removeAll() }
        return backupRequests
    }

    /// The shell wrote (or failed to write) a backup: answer the request, if its connection is still here.
    public func backupFinished(_ request: BackupRequest, _ result: Result<ReplyBody, ReplyError>, now: Time) {
        guard connections[request.connection] != nil else { return }
        reply(request.connection, request.requestID, .backup, result, now: now)
    }
}
