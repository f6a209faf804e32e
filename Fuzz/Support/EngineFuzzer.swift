import BatonEngine
import BatonProtocol
import BatonTestSupport

/// One libFuzzer input as a script for the engine: four client connections send raw frames and a
/// menu of lock and namespace requests while time passes, connections drop and come back. After each
/// step an observer connection inspects every lock used so far and checks what must always hold:
///
/// - an exclusive holder holds alone, and holders come before waiters;
/// - every node `inspect` lists exists (PROTOCOL.md §12.6);
/// - every output encodes (the codec's preconditions hold for what the engine produces).
///
/// Crashes, failed preconditions inside the engine and broken invariants are findings.
public struct EngineFuzzer {
    static let clients: [ConnectionID] = [1, 2, 3, 4]
    static let observer: ConnectionID = 100
    static let lockPaths = ["/l/a", "/l/b", "/m"]

    let engine: Engine
    var now: UInt64 = 1_000_000
    var nextRequestID: UInt32 = 1
    /// Grants each connection holds, as the engine reported them, newest last.
    var grants: [ConnectionID: [(node: String, token: UInt64)]] = [:]
    /// What the acquires in flight asked for, by request id.
    var acquires: [UInt32: ConnectionID] = [:]
    /// Replies to the observer, collected by `observe`.
    var observed: [UInt32: Result<ReplyBody, ReplyError>] = [:]

    public static func run(_ bytes: [UInt8]) {
        var fuzzer = EngineFuzzer()
        var input = Input(bytes)
        var steps = 0
        while !input.isEmpty && steps < 200 {
            fuzzer.step(&input)
            fuzzer.checkInvariants()
            steps += 1
        }
    }

    init() {
        var configuration = EngineConfiguration()
        configuration.limits.waitersPerLockMax = 64
        configuration.limits.nodesMax = 2_000
        configuration.containerGraceMilliseconds = 500
        engine = Engine(configuration: configuration, now: Time(milliseconds: now), random: SeededGenerator(seed: 7))
        for connection in Self.clients + [Self.observer] { open(connection, timeoutMilliseconds: 2_000) }
    }

    var time: Time { Time(milliseconds: now) }

    mutating func open(_ connection: ConnectionID, timeoutMilliseconds: UInt32) {
        _ = engine.connectionOpened(connection, transport: .unix, now: time)
        send(.hello(version: 1, clientName: "fuzz-\(connection)"), on: connection)
        send(.openSession(timeoutMilliseconds: timeoutMilliseconds, flags: []), on: connection)
        collect()
    }

    mutating func send(_ request: Request, on connection: ConnectionID) {
        let requestID = nextRequestID
        nextRequestID &+= 1
        if case .acquire = request { acquires[requestID] = connection }
        engine.handle(request, requestID: requestID, from: connection, now: time)
    }

    mutating func step(_ input: inout Input) {
        let operation = input.byte()
        let connection = Self.clients[Int(operation >> 4) % Self.clients.count]
        switch operation % 8 {
        case 0, 1:
            // A raw frame body, as the transport would hand it over.
            let body = input.bytes(Int(input.byte()))
            do {
                let (requestID, request) = try Codec.decodeRequest(body)
                if case .acquire = request { acquires[requestID] = connection }
                engine.handle(request, requestID: requestID, from: connection, now: time)
            } catch {
                engine.decodeFailed(error, from: connection, now: time)
            }
        case 2:
            let path = Self.lockPaths[Int(input.byte()) % Self.lockPaths.count]
            let shape = input.byte()
            let kind: LockKind = shape % 3 == 0 ? .exclusive : shape % 3 == 1 ? .shared : .semaphore
            let permits: UInt32 = kind == .semaphore ? UInt32(shape >> 6) + 1 : 1
            let wait: UInt32 = shape & 0x8 != 0 ? 0 : shape & 0x10 != 0 ? UInt32(shape) * 10 : LockRequest.waitForever
            let lease: UInt32 = shape & 0x20 != 0 ? 300 : 0
            send(.acquire(LockRequest(path: path, kind: kind, permits: permits, waitMilliseconds: wait,
                                      leaseMilliseconds: lease)), on: connection)
        case 3:
            // Release the newest grant this connection saw, or an older (stale) one.
            guard let held = grants[connection], !held.isEmpty else { break }
            let grant = held[Int(input.byte()) % held.count]
            send(.release(node: grant.node, token: grant.token), on: connection)
        case 4:
            // Namespace requests aimed at lock directories: forged waiters, deletes of others' nodes.
            let path = Self.lockPaths[Int(input.byte()) % Self.lockPaths.count]
            let choice = input.byte()
            let others = grants.values.flatMap { $0 }
            switch choice % 4 {
            case 0:
                send(.create(path: path + "/x-\(String(UInt64(choice) * 0x1234_5678_9abc, radix: 16))-000000000\(choice % 10)",
                             data: [], mode: CreateMode(kind: choice & 0x10 != 0 ? .ephemeral : .persistent,
                                                        sequential: choice & 0x20 != 0)), on: connection)
            case 1 where !others.isEmpty:
                send(.delete(path: others[Int(choice >> 2) % others.count].node, expectedVersion: anyVersion), on: connection)
            case 2:
                send(.delete(path: path, expectedVersion: anyVersion), on: connection)
            default:
                send(.children(path: path, watch: choice & 0x40 != 0), on: connection)
            }
        case 5:
            now += UInt64(input.byte()) * 20
            engine.tick(now: time)
        case 6:
            engine.connectionClosed(connection, now: time)
            grants[connection] = nil
            open(connection, timeoutMilliseconds: UInt32(input.byte()) * 20)
        default:
            send(.cancel(acquireRequestID: nextRequestID &- UInt32(input.byte() % 8) &- 1), on: connection)
        }
        collect()
    }

    /// Takes the engine's outputs, encodes each (as the server would), and notes grants and losses.
    mutating func collect() {
        for output in engine.takeOutputs() {
            guard case .send(let connection, let message) = output else { continue }
            _ = Codec.encode(message)
            switch message {
            case .reply(let reply):
                if connection == Self.observer {
                    observed[reply.requestID] = reply.result
                } else if case .success(.granted(let node, let token)) = reply.result {
                    precondition(acquires[reply.requestID] == connection, "a grant went to another connection")
                    grants[connection, default: []].append((node, token))
                }
            case .event(.lockLost(let node, _, _)):
                grants[connection]?.removeAll { $0.node == node }
            default:
                break
            }
        }
    }

    mutating func checkInvariants() {
        for path in Self.lockPaths {
            let requestID = nextRequestID
            send(.inspect(path: path), on: Self.observer)
            collect()
            guard case .success(.lockEntries(let entries))? = observed.removeValue(forKey: requestID) else { continue }
            let holders = entries.prefix { $0.position == .holder }
            precondition(holders.count == entries.filter { $0.position == .holder }.count,
                         "inspect \(path): a holder listed after a waiter")
            if holders.contains(where: { $0.kind == .exclusive }) {
                precondition(holders.count == 1, "inspect \(path): an exclusive holder shares the lock: \(entries)")
            }
            for entry in entries {
                let existsID = nextRequestID
                send(.exists(path: entry.node, watch: false), on: Self.observer)
                collect()
                if case .success(.exists(let stat))? = observed.removeValue(forKey: existsID) {
                    precondition(stat != nil, "inspect \(path) lists \(entry.node), which does not exist")
                }
            }
        }
    }
}

/// The fuzzer's bytes, consumed front to back; reads past the end give zeros.
struct Input {
    private let bytes: [UInt8]
    private var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var isEmpty: Bool { offset >= bytes.count }
    mutating func byte() -> UInt8 {
        defer { offset += 1 }
        return offset < bytes.count ? bytes[offset] : 0
    }
    mutating func bytes(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, offset + count)
        defer { offset = max(offset, end) }
        return offset < end ? Array(bytes[offset..<end]) : []
    }
}
