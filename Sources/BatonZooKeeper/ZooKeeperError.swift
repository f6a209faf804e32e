import BatonProtocol
import CZooKeeper

/// ZooKeeper's result codes as Baton's `ReplyError`s (the codes clients already know).
///
/// The line that matters: connection loss and operation timeout mean "the request may or may not have
/// happened" — `.storageFailure`, which the lock recipe retries (LockNamespace's contract). So do the
/// codes of a session that is gone or closing: the owner opens a new session and the retry runs there.
enum ZooKeeperError {
    static func replyError(_ code: Int32, _ path: String = "") -> ReplyError {
        let detail = path.isEmpty ? name(code) : "\(path): \(name(code))"
        switch code {
        case ZNONODE.rawValue: return ReplyError(.noNode, path)
        case ZNODEEXISTS.rawValue: return ReplyError(.nodeExists, path)
        case ZBADVERSION.rawValue: return ReplyError(.badVersion, path)
        case ZNOTEMPTY.rawValue: return ReplyError(.notEmpty, path)
        case ZNOCHILDRENFOREPHEMERALS.rawValue: return ReplyError(.ephemeralParent, path)
        case ZNOAUTH.rawValue, ZAUTHFAILED.rawValue, ZINVALIDACL.rawValue, ZSESSIONCLOSEDREQUIRESASLAUTH.rawValue:
            return ReplyError(.notAuthorized, "ZooKeeper refused: \(detail)")
        case ZBADARGUMENTS.rawValue: return ReplyError(.invalidArgument, detail)
        case ZCONNECTIONLOSS.rawValue, ZOPERATIONTIMEOUT.rawValue, ZSESSIONEXPIRED.rawValue, ZINVALIDSTATE.rawValue,
             ZCLOSING.rawValue, ZSESSIONMOVED.rawValue, ZTHROTTLEDOP.rawValue, ZSYSTEMERROR.rawValue,
             ZNOTREADONLY.rawValue:
            return ReplyError(.storageFailure, "ZooKeeper: \(detail) (the operation may or may not have happened)")
        default:
            return ReplyError(.internalError, "ZooKeeper: \(detail)")
        }
    }

    static func name(_ code: Int32) -> String {
        guard let text = zerror(code) else { return "error \(code)" }
        return String(cString: text)
    }
}

/// Baton's stat; the C client's is `CZooKeeper.Stat` (converted by `Stat(zooKeeper:)`).
typealias Stat = BatonProtocol.Stat
