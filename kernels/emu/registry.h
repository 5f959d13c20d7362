// Kernel registration for the CPU emulation: each generated gen/reg_<file>.cpp includes a kernel
// file after cuda_emu.h and registers its extern "C" entry points by name, with an invoker that
// unpacks cuLaunchKernel's `void** params` into the kernel's typed arguments, and the size of
// each argument (a launch captured into a graph keeps a copy of its arguments' values).
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

namespace emu {
using Invoke = void (*)(void** params);
// `sizes` has one entry per parameter: its size in bytes.
void register_kernel(const char* name, Invoke invoke, int params, const std::size_t* sizes);

template <auto F>
struct Kernel;

template <class... A, void (*F)(A...)>
struct Kernel<F> {
    static void invoke(void** p) { call(p, std::index_sequence_for<A...>{}); }
    template <std::size_t... I>
    static void call(void** p, std::index_sequence<I...>) {
        F(*static_cast<std::remove_cv_t<A>*>(p[I])...);
    }
    // One entry per parameter (the trailing 0 keeps the array non-empty for a kernel without any).
    static constexpr std::size_t sizes[] = {sizeof(A)..., 0};
};

struct Registration {
    Registration(const char* name, Invoke invoke, int params, const std::size_t* sizes) {
        register_kernel(name, invoke, params, sizes);
    }
};

template <class... A>
constexpr int arity(void (*)(A...)) {
    return sizeof...(A);
}
}  // namespace emu

#define EMU_KERNEL(name) \
    static emu::Registration emu_reg_##name(#name, &emu::Kernel<&name>::invoke, emu::arity(&name), \
                                            emu::Kernel<&name>::sizes);
