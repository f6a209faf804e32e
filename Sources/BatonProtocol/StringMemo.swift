/// The long strings one connection's requests are likely to name again, so that decoding one makes
/// no new `String` (its storage: an allocation, a pass over its bytes, a copy, and a release later:
/// ~500 instructions, two per lock pair): the last one its requests named (an acquire names its lock
/// again and again) and the last node a reply told it of (a release names the node its grant gave).
/// The server keeps one per connection (`Codec.decodeRequest(inPlace:strings:)`, `remember`). A string
/// found here has the bytes of the field, so it is the value decoding would make. Short strings (held
/// inline by `String`, no storage) are not kept. A class: the server's routing of a frame's replies
/// (`remember`) runs while its connection's frames are being decoded.
public final class StringMemo {
    /// The last long string a request named (not one found here).
    private var named = ""
    /// The node of the last grant sent.
    private var told = ""

    /// Strings shorter than this cost no storage: not kept.
    static let bytesMin = 16

    public init() {}

    /// The kept string with these bytes, if any.
    func string(matching bytes: UnsafeBufferPointer<UInt8>) -> String? {
        guard bytes.count >= Self.bytesMin else { return nil }
        if let named = Self.kept(named, matching: bytes) { return named }
        return Self.kept(told, matching: bytes)
    }

    /// A long string just decoded (not found here): kept as the last one named.
    func decoded(_ string: String) {
        if string.utf8.count >= Self.bytesMin { named = string }
    }

    /// A message for the connection: a grant's node is kept for the release that will name it.
    public func remember(_ message: ServerMessage) {
        guard case .reply(let reply) = message, reply.opcode == .acquire || reply.opcode == .acquireOwned,
              case .success(let body) = reply.result else { return }
        switch body {
        case .granted(let node, _), .held(let node, _, _): told = node
        default: break
        }
    }

    /// `string` if it has these bytes.
    private static func kept(_ string: String, matching bytes: UnsafeBufferPointer<UInt8>) -> String? {
        guard string.utf8.count == bytes.count,
              string.utf8.withContiguousStorageIfAvailable({ ByteWords.order($0, bytes) == 0 }) == true else { return nil }
        return string
    }
}
