import BatonAccess
import BatonProtocol
import XCTest

/// The rule file and the decision (Proto/PROTOCOL.md §17): pure, so every case is checked here.
final class AccessPolicyTests: XCTestCase {
    private let users: [String: UInt32] = ["alice": 1001, "bob": 1002]
    private let groups: [String: UInt32] = ["ops": 500, "dev": 501]

    private func parse(_ text: String, hasDefaultToken: Bool = false) throws -> AccessFileContents {
        try AccessFile.parse(text, hasDefaultToken: hasDefaultToken, user: { self.users[$0] }, group: { self.groups[$0] })
    }

    private func parseError(_ text: String, hasDefaultToken: Bool = false) -> AccessFileError? {
        do {
            _ = try parse(text, hasDefaultToken: hasDefaultToken)
            return nil
        } catch let error as AccessFileError {
            return error
        } catch {
            XCTFail("unexpected \(error)")
            return nil
        }
    }

    private let alice = AccessIdentity(userID: 1001, groupIDs: [1001, 501])
    private let bob = AccessIdentity(userID: 1002, groupIDs: [1002, 500])
    private let carol = AccessIdentity(userID: 1003, groupIDs: [1003])

    func testTheFileFormatParsesRulesTokensCommentsAndNames() throws {
        let contents = try parse("""
            # who may do what
            token ci /etc/baton/ci.token
            /              group:ops    all      # operators
            /locks/orders  user:alice   read,lock,watch
            /locks/        token:ci     lock
            /secret        *            none
            /x             uid:7        read
            /y             gid:8        write
            """)
        XCTAssertEqual(contents.tokenFiles, ["ci": "/etc/baton/ci.token"])
        XCTAssertEqual(contents.policy.rules, [
            AccessRule(prefix: "/", principal: .group(500), permissions: .all),
            AccessRule(prefix: "/locks/orders", principal: .user(1001), permissions: [.read, .lock, .watch]),
            // A trailing slash is dropped: the prefix covers whole components either way.
            AccessRule(prefix: "/locks", principal: .token("ci"), permissions: .lock),
            AccessRule(prefix: "/secret", principal: .anyone, permissions: []),
            AccessRule(prefix: "/x", principal: .user(7), permissions: .read),
            AccessRule(prefix: "/y", principal: .group(8), permissions: .write),
        ])
    }

    func testBadLinesAreRefusedWithTheirLineNumber() {
        XCTAssertEqual(parseError("/a user:alice read\n/b user:nobody read")?.line, 2)
        XCTAssertEqual(parseError("/a user:nobody read")?.message, "no such user: nobody")
        XCTAssertEqual(parseError("/a group:nogroup read")?.message, "no such group: nogroup")
        XCTAssertEqual(parseError("\n\n/a user:alice read,fly")?.line, 3)
        XCTAssertNotNil(parseError("/a user:alice read,fly")?.message.contains("unknown permission \"fly\""))
        XCTAssertEqual(parseError("a user:alice read")?.line, 1)
        XCTAssertEqual(parseError("/a user:alice")?.line, 1)
        XCTAssertEqual(parseError("/a alice read")?.line, 1)
        XCTAssertEqual(parseError("/a//b * read")?.line, 1)
        XCTAssertEqual(parseError("/a/../b * read")?.line, 1)
        XCTAssertEqual(parseError("/a uid:x read")?.line, 1)
        XCTAssertEqual(parseError("token ci relative.token")?.line, 1)
        XCTAssertEqual(parseError("token ci /a\ntoken ci /b")?.line, 2)
        // A token principal must be declared; `default` is the --tcp-token-file one.
        XCTAssertEqual(parseError("/ * read\n/a token:ci read")?.line, 2)
        XCTAssertNotNil(parseError("/a token:default read"))
        XCTAssertNil(parseError("/a token:default read", hasDefaultToken: true))
        XCTAssertNotNil(parseError("token default /t", hasDefaultToken: true))
    }

    func testTheMostSpecificMatchingPrefixDecides() throws {
        let policy = try parse("""
            /              group:ops    all
            /              *            read
            /locks         user:alice   lock
            /locks/orders  user:alice   read,lock,watch
            /secret        *            none
            /secret        user:bob     read
            """).policy
        // alice: /locks/orders beats /locks beats /.
        XCTAssertEqual(policy.permissions(of: alice, at: "/locks/orders/x"), [.read, .lock, .watch])
        XCTAssertEqual(policy.permissions(of: alice, at: "/locks/orders"), [.read, .lock, .watch])
        // /locks rule: lock only, the / read is not consulted.
        XCTAssertEqual(policy.permissions(of: alice, at: "/locks/other"), [.lock])
        XCTAssertEqual(policy.permissions(of: alice, at: "/data"), [.read])
        // Whole components: /locksmith is not under /locks.
        XCTAssertEqual(policy.permissions(of: alice, at: "/locksmith"), [.read])
        // bob is in ops: all under /, but at /secret the rules there decide (union of * and bob).
        XCTAssertEqual(policy.permissions(of: bob, at: "/locks/orders"), .all)
        XCTAssertEqual(policy.permissions(of: bob, at: "/secret/plans"), [.read])
        XCTAssertEqual(policy.permissions(of: alice, at: "/secret/plans"), [])
        XCTAssertEqual(policy.permissions(of: carol, at: "/"), [.read])
        // No rule matches: nothing.
        XCTAssertEqual(try parse("/a user:alice all").policy.permissions(of: carol, at: "/a"), [])
        XCTAssertEqual(try parse("/a user:alice all").policy.permissions(of: alice, at: "/b"), [])
    }

    func testEverySpellingOfANodeGetsTheSameDecision() throws {
        // "/caf\u{E9}" and "/cafe\u{301}" name one node (the namespace compares paths as Swift does,
        // by canonical equivalence): a rule on one spelling must not be bypassed by the other.
        let policy = try parse("/ * read\n/caf\u{E9} * none\n/cafe\u{301}x * all").policy
        XCTAssertEqual(policy.permissions(of: carol, at: "/caf\u{E9}/x"), [])
        XCTAssertEqual(policy.permissions(of: carol, at: "/cafe\u{301}/x"), [])
        XCTAssertEqual(policy.permissions(of: carol, at: "/cafe\u{301}"), [])
        XCTAssertEqual(policy.permissions(of: carol, at: "/caf\u{E9}x/y"), .all)
        XCTAssertEqual(policy.permissions(of: carol, at: "/cafe/x"), [.read])
    }

    func testANarrowedPolicyDecidesAsTheWholeOneForItsIdentity() throws {
        let policy = try parse("""
            /          group:ops    all
            /          *            read
            /locks     user:alice   lock
            /secret    *            none
            /secret    user:bob     read
            """).policy
        for identity in [alice, bob, carol] {
            let narrowed = policy.narrowed(to: identity)
            XCTAssertLessThan(narrowed.rules.count, policy.rules.count)
            for path in ["/", "/locks", "/locks/a", "/secret", "/secret/x", "/other"] {
                XCTAssertEqual(narrowed.permissions(of: identity, at: path), policy.permissions(of: identity, at: path), path)
            }
        }
    }

    func testTokenPrincipalsMatchOnlyTheirToken() throws {
        let policy = try parse("token ci /t\n/ token:ci read,lock\n/ token:default read", hasDefaultToken: true).policy
        XCTAssertEqual(policy.permissions(of: AccessIdentity(tokenName: "ci"), at: "/a"), [.read, .lock])
        XCTAssertEqual(policy.permissions(of: AccessIdentity(tokenName: "default"), at: "/a"), [.read])
        XCTAssertEqual(policy.permissions(of: AccessIdentity(), at: "/a"), [])
    }

    func testEachRequestNeedsItsPermissionOnItsPath() {
        func needs(_ request: Request) -> [String] {
            AccessPolicy.requirements(of: request).map { "\($0.permission.description) \($0.path)" }
        }
        XCTAssertEqual(needs(.create(path: "/a", data: [], mode: .persistent)), ["create /a"])
        XCTAssertEqual(needs(.delete(path: "/a", expectedVersion: -1)), ["delete /a"])
        XCTAssertEqual(needs(.set(path: "/a", data: [], expectedVersion: -1)), ["write /a"])
        XCTAssertEqual(needs(.get(path: "/a", watch: false)), ["read /a"])
        XCTAssertEqual(needs(.get(path: "/a", watch: true)), ["read /a", "watch /a"])
        XCTAssertEqual(needs(.exists(path: "/a", watch: true)), ["read /a", "watch /a"])
        XCTAssertEqual(needs(.addWatch(path: "/a", mode: .recursive)), ["read /a", "watch /a"])
        XCTAssertEqual(needs(.children(path: "/a", watch: false)), ["read /a"])
        XCTAssertEqual(needs(.check(path: "/a", expectedVersion: 0)), ["read /a"])
        XCTAssertEqual(needs(.acquire(LockRequest(path: "/l"))), ["lock /l"])
        XCTAssertEqual(needs(.release(node: "/l/x-0000000001", token: 1)), ["lock /l/x-0000000001"])
        XCTAssertEqual(needs(.renew(node: "/l/x", token: 1, leaseMilliseconds: 1)), ["lock /l/x"])
        XCTAssertEqual(needs(.requestRevocation(path: "/l")), ["lock /l"])
        XCTAssertEqual(needs(.acquireAll(locks: [LockSetMember(path: "/a"), LockSetMember(path: "/b", kind: .shared)],
                                         waitMilliseconds: 0, leaseMilliseconds: 0)), ["lock /a", "lock /b"])
        XCTAssertEqual(needs(.checkToken(path: "/l", token: 1)), ["read /l"])
        XCTAssertEqual(needs(.inspect(path: "/l")), ["read /l"])
        XCTAssertEqual(needs(.forceRelease(path: "/l", sessionID: 0)), ["admin /l"])
        XCTAssertEqual(needs(.backup(file: "/tmp/b")), ["admin /"])
        XCTAssertEqual(needs(.multi([.create(path: "/a", data: [], mode: .persistent), .check(path: "/b", expectedVersion: 0),
                                     .set(path: "/c", data: [], expectedVersion: -1), .delete(path: "/d", expectedVersion: -1)])),
                       ["create /a", "read /b", "write /c", "delete /d"])
        for request: Request in [.ping, .removeWatches(path: "/a", mode: .persistent), .closeSession, .cancel(acquireRequestID: 1), .authenticate(token: []),
                                 .openSession(timeoutMilliseconds: 0, flags: [])] {
            XCTAssertEqual(needs(request), [], "\(request.opcode)")
        }
    }

    func testADenialNamesTheFirstMissingPermissionAndTheMultiOperation() throws {
        let policy = try parse("/ user:alice read,create").policy
        XCTAssertNil(policy.denial(of: .get(path: "/a", watch: false), by: alice))
        XCTAssertEqual(policy.denial(of: .get(path: "/a", watch: true), by: alice), AccessRequirement(.watch, "/a"))
        XCTAssertEqual(policy.denial(of: .multi([.create(path: "/a", data: [], mode: .persistent),
                                                 .delete(path: "/b", expectedVersion: -1)]), by: alice),
                       AccessRequirement(.delete, "/b", operationIndex: 1))
        XCTAssertNotNil(policy.denial(of: .get(path: "/a", watch: false), by: bob))
    }
}
