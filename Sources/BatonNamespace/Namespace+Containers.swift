import BatonProtocol

/// Container sweep (ZooKeeper's ContainerManager does the same periodically): a container that
/// has had a child and is empty again is deleted once it has stayed empty for the grace period.
/// Lock directories are containers: they must not leak, yet a lock taken and released in a loop
/// must not log a create and a delete every time, hence the grace.
extension Namespace {
    func containerChildrenChanged(_ path: String, now: Time) {
        // Two fields read in place (binding the node would copy it).
        guard let (kind, childless) = nodes[path].map({ ($0.kind, $0.children.isEmpty) }), kind == .container else {
            if !containerSweepDeadlines.isEmpty { containerSweepDeadlines.removeValue(forKey: path) }
            return
        }
        if childless {
            scheduleSweep(path, now: now)
        } else if !containerSweepDeadlines.isEmpty {
            containerSweepDeadlines.removeValue(forKey: path)
        }
    }

    func scheduleSweep(_ path: String, now: Time) {
        guard containerSweepDeadlines[path] == nil else { return }
        let deadline = now.monotonicMilliseconds + configuration.containerGraceMilliseconds
        containerSweepDeadlines[path] = deadline
        containerSweepQueue.append(ContainerDeadline(deadlineMilliseconds: deadline, path: path))
    }

    /// Deletes the containers whose grace has run out. Each deletion is logged and fires watches;
    /// a parent container emptied by it starts its own grace period.
    public func sweepContainers(now: Time) {
        // A sweep logs a record: it waits until the log can be written again.
        guard writeRefusal == nil else { return }
        while let first = containerSweepQueue.first, first.deadlineMilliseconds <= now.monotonicMilliseconds {
            containerSweepQueue.removeFirst()
            guard containerSweepDeadlines[first.path] == first.deadlineMilliseconds else { continue }
            containerSweepDeadlines.removeValue(forKey: first.path)
            guard let node = nodes[first.path], node.kind == .container, node.children.isEmpty else { continue }
            var changes = Changes()
            removeNode(first.path, kind: .container, sweep: true, &changes)
            commit(changes, asOneRecord: false, now: now)
        }
    }

    /// Containers waiting to be swept (for tests and metrics).
    public var containersAwaitingSweep: Int { containerSweepDeadlines.count }
}
