// The fused attention kernels of --precision tf32: one m16n8k8 TF32 product.
// Templates, names, the list and the launch contracts: attention.cuh.
#include "attention.cuh"

PASA_ATTN_PRECISION(PREC_TF32, tf32)
