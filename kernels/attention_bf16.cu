// The fused attention kernels of --precision bf16: one m16n8k8 bf16 product, f32 accumulation.
// Templates, names, the list and the launch contracts: attention.cuh.
#include "attention.cuh"

PASA_ATTN_PRECISION(PREC_BF16, bf16)
