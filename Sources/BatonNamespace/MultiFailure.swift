import BatonProtocol

/// A multi that changed nothing: `index` is the operation that failed (nil when the multi as a
/// whole was refused, e.g. too many operations).
public struct MultiFailure: Error, Sendable, Equatable {
    public var index: Int?
    public var error: ReplyError
    public init(index: Int?, error: ReplyError) {
        self.index = index
        self.error = error
    }

    /// The error as the client sees it: the code of the failed operation, its index in the message.
    public var replyError: ReplyError {
        guard let index else { return error }
        return ReplyError(error.code, "operation \(index): \(error.message.isEmpty ? error.code.name : error.message)")
    }
}
