#ifndef BATON_CLIBUV_SHIM_H
#define BATON_CLIBUV_SHIM_H
#include <uv.h>

// Casts that spare Swift the OpaquePointer dance: every libuv handle type
// begins with the uv_handle_t fields, every stream with uv_stream_t.
static inline uv_handle_t *baton_handle(void *handle) { return (uv_handle_t *)handle; }
static inline uv_stream_t *baton_stream(void *handle) { return (uv_stream_t *)handle; }
#endif
