// The few CUDA runtime calls the core needs, behind plain functions so that core code and
// public headers carry no CUDA types. Without the CUDA backend they raise topk::Error.
#pragma once
#include <cstddef>
#include <cstdint>

namespace topk {

enum class CopyKind { host_to_device, device_to_host, device_to_device };

void* device_alloc(size_t bytes);  // zero-filled
void device_free(void* p);
void device_copy(void* dst, const void* src, size_t bytes, CopyKind kind);
int device_count();
void device_synchronize();
int64_t device_memory_used();  // bytes of the current device's memory in use (all processes)

}  // namespace topk
