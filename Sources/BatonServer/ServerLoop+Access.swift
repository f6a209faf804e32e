import BatonAccess
import BatonEngine
import Logging

// The shell's part of access control (Proto/PROTOCOL.md §17): the rule file at start and on
// SIGHUP, the Unix credentials of each connection, and the log of denials. The decision itself is
// the engine's (Engine+Access.swift, BatonAccess).

extension ServerLoop {
    /// Reads `--acl`: at start before anything is opened (a bad file stops the start), on SIGHUP.
    func readAccessRules() throws(ServerError) -> AccessRulesFile.Loaded? {
        guard let path = configuration.accessRulesPath else { return nil }
        return try AccessRulesFile.load(path: path, hasDefaultToken: configuration.engine.tcpAuthenticationToken != nil)
    }

    /// Puts rules read by `readAccessRules` in force.
    func installAccessRules(_ loaded: AccessRulesFile.Loaded?) {
        guard let loaded, let engine = engine as? Engine else { return }
        engine.setAccessRules(loaded.policy, namedTokens: loaded.namedTokens)
        logger.info("access rules in force", metadata: ["file": "\(configuration.accessRulesPath ?? "")",
                                                         "rules": "\(loaded.policy.rules.count)",
                                                         "tokens": "\(loaded.namedTokens.count)"])
    }

    /// SIGHUP: the file again. A bad file keeps the rules in force, says why and is counted.
    func reloadAccessRules() {
        guard configuration.accessRulesPath != nil else { return }
        do throws(ServerError) {
            installAccessRules(try readAccessRules())
            counters.accessRulesReloads += 1
        } catch {
            counters.accessRulesReloadFailures += 1
            logger.error("access rules not reloaded; the previous rules stay in force", metadata: ["error": "\(error.message)"])
        }
    }

    /// The Unix peer's user and groups, looked up once on accept (only with rules: the lookup may
    /// ask a directory service). `peer` is `describePeer`'s "pid=N uid=N".
    func identifyForAccessRules(_ connection: Connection) {
        guard configuration.accessRulesPath != nil, connection.transport == .unix, let engine = engine as? Engine,
              let field = connection.peer.split(separator: " ").first(where: { $0.hasPrefix("uid=") }),
              let userID = UInt32(field.dropFirst(4)) else { return }
        engine.connectionCredentials(connection.id, userID: userID, groupIDs: AccessRulesFile.groupIDs(ofUser: userID))
    }

    /// Logs the denials the engine kept (at most `Engine.deniedLogPerSecondMax` a second) and how many it did not.
    func logAccessDenials() {
        guard configuration.accessRulesPath != nil, let engine = engine as? Engine else { return }
        let (denials, suppressed) = engine.takeAccessDenialsToLog()
        for denial in denials {
            logger.warning("permission denied", metadata: [
                "who": "\(denial.identity.description)", "peer": "\(denial.peer ?? "?")", "op": "\(denial.opcode.name)",
                "permission": "\(denial.permission.description)", "path": "\(denial.path)",
            ])
        }
        if suppressed > 0 {
            logger.warning("permission denied more often than logged", metadata: ["not_logged": "\(suppressed)"])
        }
    }
}
