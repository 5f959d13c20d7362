// The host side of the CPU emulation's engine, used by the fake driver (driver.cpp).
#pragma once

#include <cstddef>

#include "cuda_emu.h"
#include "registry.h"

namespace emu {
// The registered kernel `name`: its invoker, parameter count and parameter sizes; nullptr when
// unknown.
const char* find_kernel(const char* name, Invoke* invoke, int* params, const size_t** sizes);
// Run a launch to completion on the calling thread.
void launch(const char* kernel, Invoke invoke, emu_uint3 grid, emu_uint3 block, size_t smem_bytes,
            void** params);
// Guarded device memory (see runtime.cpp); device_free returns false for an unknown pointer.
void* device_alloc(size_t bytes);
bool device_free(void* p);
}  // namespace emu
