// The fake libnvToolsExt of the CPU emulation: the NVTX range calls pasa makes (push and pop by
// message), so that the CUDA backend's NVTX path runs in the emulation too. It keeps each
// thread's stack depth and returns it as NVTX does (push: the level of the new range, from 0;
// pop: the level of the range ended), and stops the process on a pop with no range open, which
// would mean unbalanced ranges in pasa.
#include <cstdio>
#include <cstdlib>

namespace {
thread_local int depth = 0;
}

extern "C" {
int nvtxRangePushA(const char* message) {
    if (!message) {
        std::fprintf(stderr, "emu nvtx: a range pushed with a null message\n");
        std::abort();
    }
    return depth++;
}
int nvtxRangePop() {
    if (depth == 0) {
        std::fprintf(stderr, "emu nvtx: nvtxRangePop with no range open (unbalanced ranges)\n");
        std::abort();
    }
    return --depth;
}
void nvtxMarkA(const char*) {}
}
