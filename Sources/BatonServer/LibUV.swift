import CLibUV
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Handle memory and ownership, one rule for every handle (docs/LIBUV.md):
/// memory from `calloc`; `data` is nil or an `Unmanaged.passRetained(owner)`; the shared close
/// callback releases the owner and frees the memory. Nothing frees a handle anywhere else.
enum LibUV {
    static func allocate<Handle>(_ type: Handle.Type) -> UnsafeMutablePointer<Handle> {
        guard let memory = calloc(1, MemoryLayout<Handle>.size) else { fatalError("out of memory") }
        return memory.bindMemory(to: Handle.self, capacity: 1)
    }

    /// Closes a handle (once) with the shared callback.
    static func close(_ handle: UnsafeMutableRawPointer) {
        let base = baton_handle(handle)!
        guard uv_is_closing(base) == 0 else { return }
        uv_close(base, closeAndRelease)
    }

    static func setOwner(_ handle: UnsafeMutableRawPointer, _ owner: AnyObject) {
        baton_handle(handle).pointee.data = Unmanaged.passRetained(owner).toOpaque()
    }

    static func owner<Owner: AnyObject>(_ handle: UnsafeMutableRawPointer?, as type: Owner.Type) -> Owner? {
        guard let handle, let data = baton_handle(handle).pointee.data else { return nil }
        return Unmanaged<Owner>.fromOpaque(data).takeUnretainedValue()
    }

    /// As `owner`, lent to `body` without a retain and release (a connection's read, once a request).
    /// Safe: the handle's reference (`setOwner`) is released only by the close callback, which libuv
    /// runs in a later phase of the loop, never inside another callback.
    static func withOwner<Owner: AnyObject>(_ handle: UnsafeMutableRawPointer?, as type: Owner.Type, _ body: (Owner) -> Void) {
        guard let handle, let data = baton_handle(handle).pointee.data else { return }
        Unmanaged<Owner>.fromOpaque(data)._withUnsafeGuaranteedRef(body)
    }

    static func errorName(_ code: Int32) -> String { String(cString: uv_err_name(code)) }
    static func errorText(_ code: Int32) -> String { String(cString: uv_strerror(code)) }
    static func describe(_ code: Int32) -> String { "\(errorName(code)) (\(errorText(code)))" }
}

/// The one close callback: releases the owner in `data`, then frees the handle memory.
func closeAndRelease(_ handle: UnsafeMutablePointer<uv_handle_t>?) {
    guard let handle else { return }
    if let data = handle.pointee.data {
        handle.pointee.data = nil
        Unmanaged<AnyObject>.fromOpaque(data).release()
    }
    free(handle)
}

/// `uv_walk` callback used at shutdown: close whatever is still open.
func closeEveryHandle(_ handle: UnsafeMutablePointer<uv_handle_t>?, _ argument: UnsafeMutableRawPointer?) {
    guard let handle, uv_is_closing(handle) == 0 else { return }
    uv_close(handle, closeAndRelease)
}
