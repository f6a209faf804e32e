import BatonProtocol

/// Container sweep (ZooKeeper's ContainerManager does the same periodically): a container that
/// has had a child and is empty again is deleted once it has stayed empty for the grace period.
/// Lock directories are containers: they must not leak, yet a lock taken and released in a loop
/// must not log a create and a delete every time, hence the grace.
///
/// The schedule is lazy, because a lock taken and released in a loop empties and fills its
/// directory once per pair: `containerSweepDeadlines` holds, per container that was emptied, the
/// deadline of its latest empty period (emptied + grace), and the queue holds at most one entry
/// per key, never later than the key's deadline. A child's creation changes nothing; the sweep
/// drops an entry whose container is no longer empty, and moves one whose deadline moved on (the
/// container was filled and emptied again since) to its place in the queue. The container scheduled
/// last keeps its latest deadline in `lastSweepDeadline` until another is scheduled or the sweep runs.
extension Namespace {
    func containerChildrenChanged(_ path: String, now: Time) {
        // Two fields read in place (binding the node would copy it).
        guard let (kind, childless) = nodes[path].map({ ($0.kind, $0.childrenCount == 0) }), kind == .container else {
            return  // gone (the sweep drops its entry) or not a container
        }
        if childless { scheduleSweep(path, now: now) }
    }

    /// The container at `path` is empty as of `now`: it is swept once `now` + grace has passed,
    /// unless it has a child then.
    func scheduleSweep(_ path: String, now: Time) {
        let deadline = now.monotonicMilliseconds + configuration.containerGraceMilliseconds
        // A lock released in a loop empties the same container each time: its path compared, not hashed.
        if lastSweepDeadline?.path == path {
            lastSweepDeadline!.deadlineMilliseconds = deadline
            return
        }
        flushSweepDeadline()
        lastSweepDeadline = ContainerDeadline(deadlineMilliseconds: deadline, path: path)
        // One hash of the path when the container already has an entry.
        guard containerSweepDeadlines.updateValue(deadline, forKey: path) == nil else { return }
        containerSweepQueue.append(ContainerDeadline(deadlineMilliseconds: deadline, path: path))
    }

    /// `lastSweepDeadline`'s deadline into its container's entry in `containerSweepDeadlines` (it
    /// has one: `dropSweepEntry` forgets `lastSweepDeadline` with its entry).
    func flushSweepDeadline() {
        guard let last = lastSweepDeadline else { return }
        lastSweepDeadline = nil
        let previous = containerSweepDeadlines.updateValue(last.deadlineMilliseconds, forKey: last.path)
        assert(previous != nil, "\(last.path) was scheduled without an entry")
    }

    /// A container leaves the schedule (its entry; `lastSweepDeadline` if it is that one).
    private func dropSweepEntry(_ path: String) {
        containerSweepDeadlines.removeValue(forKey: path)
        if lastSweepDeadline?.path == path { lastSweepDeadline = nil }
    }

    /// Deletes the containers whose grace has run out. Each deletion is logged and fires watches;
    /// a parent container emptied by it starts its own grace period.
    public func sweepContainers(now: Time) {
        // A sweep logs a record: it waits until the log can be written again.
        guard writeRefusal == nil else { return }
        flushSweepDeadline()
        while let first = containerSweepQueue.first, first.deadlineMilliseconds <= now.monotonicMilliseconds {
            containerSweepQueue.removeFirst()
            guard let deadline = containerSweepDeadlines[first.path] else { continue }
            guard let node = nodes[first.path], node.kind == .container, node.childrenCount == 0 else {
                dropSweepEntry(first.path)
                continue
            }
            guard deadline <= first.deadlineMilliseconds else {
                requeueSweep(ContainerDeadline(deadlineMilliseconds: deadline, path: first.path))
                continue
            }
            dropSweepEntry(first.path)
            var changes = makeChanges()
            removeNode(first.path, sweep: true, &changes)
            commit(changes, asOneRecord: false, now: now)
        }
    }

    /// Puts an entry whose deadline moved on back in deadline order. Deadlines grow with the
    /// clock, so its place is near the back: the search and the move start there.
    private func requeueSweep(_ entry: ContainerDeadline) {
        var index = containerSweepQueue.endIndex
        while index > containerSweepQueue.startIndex,
              containerSweepQueue[index - 1].deadlineMilliseconds > entry.deadlineMilliseconds {
            index -= 1
        }
        containerSweepQueue.insert(entry, at: index)
    }

    /// Containers with a sweep scheduled (for tests and metrics): emptied ones, and those filled
    /// again whose entry the sweep has not dropped yet.
    public var containersAwaitingSweep: Int {
        flushSweepDeadline()
        return containerSweepDeadlines.count
    }
}
