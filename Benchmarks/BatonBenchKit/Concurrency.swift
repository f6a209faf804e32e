import Foundation

/// Runs `body(index)` on `count` threads at once and waits for all; each thread owns its client.
func runThreads(_ count: Int, stackBytes: Int = 512 * 1024, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            body(index)
            group.leave()
        }
        thread.stackSize = stackBytes
        thread.start()
    }
    group.wait()
}

/// Results that threads hand back, behind a lock.
final class Collector<Element>: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [Element] = []
    func append(_ element: Element) {
        lock.lock()
        storage.append(element)
        lock.unlock()
    }
    var elements: [Element] {
        lock.lock()
        defer { lock.unlock() }
        return storage
    }
}

/// A start line for threads: each arrives, and all leave together once `count` have.
final class StartLine: @unchecked Sendable {
    private let condition = NSCondition()
    private var arrived = 0
    private let count: Int
    init(_ count: Int) { self.count = count }
    func arriveAndWait() {
        condition.lock()
        arrived += 1
        if arrived == count { condition.broadcast() }
        while arrived < count { condition.wait() }
        condition.unlock()
    }
}

/// A flag one thread sets and others read.
final class AtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

/// Hands a value that one thread at a time uses to another thread.
final class UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
