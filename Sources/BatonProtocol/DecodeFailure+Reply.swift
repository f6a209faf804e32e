extension DecodeFailure {
    /// The error reply that answers an undecodable frame (Proto/PROTOCOL.md, "Errors the server cannot
    /// attribute"): it echoes the request id and opcode when they were read; otherwise request id 0
    /// and opcode `hello`, which stands for the connection as a whole.
    public var reply: Reply {
        let known = opcode.flatMap(Opcode.init(rawValue:))
        return Reply(requestID: requestID ?? 0, opcode: known ?? .hello,
                     result: .failure(ReplyError(code, message)))
    }
}
