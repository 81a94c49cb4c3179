// MatMulPrecision: what Op.MatMul multiplies with (passed explicitly, never a global switch).
//   Fp32  operands and sums in fp32 (the default, and the reference everything else is checked against).
//   Bf16  both operands rounded to bf16 (round to nearest even: 8 significant bits instead of 24), the
//         sums in fp32; in the backward each product rounds its two operands too (dA = bf16(dC) @ bf16(B)^T).
//         On CUDA it runs on tensor cores (Compute/Kernels/Bf16MatMulKernels.cs). Only the matmul
//         operands are rounded: the tensors themselves, master weights, gradients and optimizer stay fp32.
// Tests: Grpo.Tests/Compute/Bf16MatMulTests.cs.
namespace Grpo.Ops;

public enum MatMulPrecision
{
    Fp32,
    Bf16,
}
