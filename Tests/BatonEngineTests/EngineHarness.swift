@testable import BatonEngine
import BatonNamespace
import BatonProtocol
import Foundation
import XCTest
import BatonTestSupport

/// Drives an engine with a fake clock and a seeded RNG, and reads what it asked the server to do.
final class EngineHarness {
    let engine: Engine
    var now = Time(monotonicMilliseconds: 100_000, wallMilliseconds: 1_700_000_000_000)
    var nextRequestID: UInt32 = 1
    static let tcpToken = Array("harness-tcp-token".utf8)

    init(seed: UInt64 = 42, _ adjust: (inout EngineConfiguration) -> Void = { _ in }) {
        var configuration = EngineConfiguration()
        configuration.serverName = "test-batond"
        configuration.defaultSessionTimeoutMilliseconds = 5_000
        configuration.containerGraceMilliseconds = 1_000
        configuration.tcpAuthenticationToken = EngineHarness.tcpToken
        adjust(&configuration)
        engine = Engine(configuration: configuration, now: now, random: SeededGenerator(seed: seed))
    }

    func advance(_ milliseconds: UInt64) {
        now = now.advanced(by: milliseconds)
        engine.tick(now: now)
    }

    @discardableResult
    func send(_ request: Request, on connection: ConnectionID) -> (requestID: UInt32, outputs: [EngineOutput]) {
        let requestID = nextRequestID
        nextRequestID += 1
        engine.handle(request, requestID: requestID, from: connection, now: now)
        return (requestID, engine.takeOutputs())
    }

    /// Sends a request and returns its reply's result (the reply must be among the outputs).
    func call(_ request: Request, on connection: ConnectionID, file: StaticString = #filePath,
              line: UInt = #line) -> Result<ReplyBody, ReplyError> {
        let (requestID, outputs) = send(request, on: connection)
        guard let reply = replies(outputs, to: connection).first(where: { $0.requestID == requestID }) else {
            XCTFail("no reply in \(outputs)", file: file, line: line)
            return .failure(ReplyError(.internalError, "no reply"))
        }
        return reply.result
    }

    /// Deletes a node behind the engine's request path, as no client request may delete a waiter node
    /// (PROTOCOL.md §12.1) but an operator's forceRelease does (the one way it happens on the
    /// embedded namespace, `Engine.deleteLockNode`); returns what it caused.
    func deleteOutOfBand(_ path: String) -> [EngineOutput] {
        XCTAssertTrue(engine.deleteLockNode(path, now: now))
        engine.drain(now: now)
        return engine.takeOutputs()
    }

    /// Opens a connection and says hello.
    func connect(_ connection: ConnectionID, transport: TransportKind = .unix) {
        XCTAssertTrue(engine.connectionOpened(connection, transport: transport, now: now))
        guard case .success(.hello) = call(.hello(version: ProtocolVersion.current, clientName: "client-\(connection)"),
                                           on: connection) else { return XCTFail("hello failed") }
        // TCP connections must authenticate before a session (Engine+Authentication.swift).
        if transport == .tcp {
            XCTAssertEqual(call(.authenticate(token: EngineHarness.tcpToken), on: connection), .success(.empty))
        }
    }

    /// Connects and opens a session; returns its id and secret.
    @discardableResult
    func openSession(_ connection: ConnectionID, transport: TransportKind = .unix, timeoutMilliseconds: UInt32 = 0,
                     flags: SessionFlags = []) -> (id: UInt64, secret: SessionSecret) {
        connect(connection, transport: transport)
        guard case .success(.session(let id, let secret, _)) = call(
            .openSession(timeoutMilliseconds: timeoutMilliseconds, flags: flags), on: connection) else {
            XCTFail("openSession failed")
            return (0, SessionSecret(high: 0, low: 0))
        }
        return (id, secret)
    }
}

/// Seeds for a simulation test: `seedVariable` names one seed to rerun; else `runsVariable` (or
/// `defaultRuns`) consecutive seeds from `firstSeed`.
func simulationSeeds(runsVariable: String, seedVariable: String, defaultRuns: Int, firstSeed: UInt64) -> [UInt64] {
    let environment = ProcessInfo.processInfo.environment
    if let seed = environment[seedVariable].flatMap(UInt64.init) { return [seed] }
    let runs = environment[runsVariable].flatMap(Int.init) ?? defaultRuns
    return (0..<UInt64(max(runs, 0))).map { firstSeed + $0 }
}

func replies(_ outputs: [EngineOutput], to connection: ConnectionID) -> [Reply] {
    outputs.compactMap { if case .send(connection, .reply(let reply)) = $0 { return reply } else { return nil } }
}

/// The grant answering `requestID` on `connection`, if the outputs hold one.
func granted(_ outputs: [EngineOutput], to connection: ConnectionID, requestID: UInt32) -> (node: String, token: UInt64)? {
    for reply in replies(outputs, to: connection) where reply.requestID == requestID {
        if case .success(.granted(let node, let token)) = reply.result { return (node, token) }
        if case .success(.held(let node, let token, _)) = reply.result { return (node, token) }
    }
    return nil
}

/// The hold count of an `acquireOwned` answering `requestID` on `connection`, if the outputs hold one.
func holdCount(_ outputs: [EngineOutput], to connection: ConnectionID, requestID: UInt32) -> UInt32? {
    for reply in replies(outputs, to: connection) where reply.requestID == requestID && reply.opcode == .acquireOwned {
        if case .success(.held(_, _, let count)) = reply.result { return count }
    }
    return nil
}

func events(_ outputs: [EngineOutput], to connection: ConnectionID) -> [Event] {
    outputs.compactMap { if case .send(connection, .event(let event)) = $0 { return event } else { return nil } }
}

func closes(_ outputs: [EngineOutput]) -> [ConnectionID] {
    outputs.compactMap { if case .close(let connection) = $0 { return connection } else { return nil } }
}

func errorCode(_ result: Result<ReplyBody, ReplyError>) -> ErrorCode? {
    if case .failure(let error) = result { return error.code }
    return nil
}
