// Kernel registration for the CPU emulation: each generated gen/reg_<file>.cpp includes a kernel
// file after cuda_emu.h and registers its extern "C" entry points by name, with an invoker that
// unpacks cuLaunchKernel's `void** params` into the kernel's typed arguments.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

namespace emu {
using Invoke = void (*)(void** params);
void register_kernel(const char* name, Invoke invoke, int params);

template <auto F>
struct Kernel;

template <class... A, void (*F)(A...)>
struct Kernel<F> {
    static void invoke(void** p) { call(p, std::index_sequence_for<A...>{}); }
    template <std::size_t... I>
    static void call(void** p, std::index_sequence<I...>) {
        F(*static_cast<std::remove_cv_t<A>*>(p[I])...);
    }
};

struct Registration {
    Registration(const char* name, Invoke invoke, int params) { register_kernel(name, invoke, params); }
};

template <class... A>
constexpr int arity(void (*)(A...)) {
    return sizeof...(A);
}
}  // namespace emu

#define EMU_KERNEL(name) \
    static emu::Registration emu_reg_##name(#name, &emu::Kernel<&name>::invoke, emu::arity(&name));
