// The fused attention kernels of the default --precision fp32: every product through split TF32 (three
// m16n8k8 TF32 products, about the rounding of f32 arithmetic).
// Templates, names, the list and the launch contracts: attention.cuh.
#include "attention.cuh"

PASA_ATTN_PRECISION(PREC_FP32, fp32)
