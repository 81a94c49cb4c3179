// The tensor-core GEMM without a GPU: its kernels compile to PTX holding the instructions the design
// rests on (mma.sync bf16, ldmatrix, cp.async for v2), the launcher refuses shapes it does not handle,
// and the fp32 -> bf16 rounding matches values worked out by hand. Whether the PTX computes the right
// numbers is `grpo check --device cuda`'s job (tc_gemm cases): inline PTX does not run on the CPU accelerator.
using System.Text.RegularExpressions;
using Grpo.Compute;
using Grpo.Compute.Kernels;

namespace Grpo.Tests.Compute;

[Collection("cpu-accelerator")]
public class TensorCoreGemmTests(CpuAcceleratorFixture fixture)
{
    private const string Mma = "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32";

    private static string Ptx(string kernel) =>
        PtxCompileTests.CompileToPtx(typeof(TensorCoreGemmKernels).GetMethod(kernel)!);

    [Theory]
    [InlineData("TensorCoreGemmKernel", true)]
    [InlineData("TensorCoreGemmV1Kernel", false)]
    public void PtxHoldsTheTensorCoreInstructions(string kernel, bool pipelined)
    {
        string ptx = Ptx(kernel);
        // One MmaStep: 4 A tiles x 4 column tiles = 16 mma and 4 + 2 ldmatrix.x4, over named registers.
        Assert.Equal(16, Regex.Matches(ptx, Regex.Escape(Mma)).Count);
        Assert.Equal(6, Regex.Matches(ptx, @"ldmatrix\.sync\.aligned\.m8n8\.x4\.shared\.b16").Count);
        Assert.Contains(".reg .f32 acc<64>", ptx);
        Assert.Contains("__dyn_shared_alloca", ptx);
        Assert.Equal(pipelined, ptx.Contains("cp.async.cg.shared.global"));
        Assert.Equal(pipelined, ptx.Contains("cp.async.wait_group"));
        Assert.Equal(!pipelined, ptx.Contains("ld.global.v4.b32"));
    }

    [Fact]
    public void AccumulatorsStayOutOfLocalMemory()
    {
        // The one local slot is the out operand that reads __dyn_shared_alloca's address (4 bytes, once);
        // accumulators passed as Ref<> operands would each take one (shared/GPU.md: 45x slower).
        foreach (var kernel in new[] { "TensorCoreGemmKernel", "TensorCoreGemmV1Kernel" })
        {
            var depots = Regex.Matches(Ptx(kernel), @"\.local \.align \d+ \.b8 \w+\[(\d+)\]");
            Assert.True(depots.Sum(m => int.Parse(m.Groups[1].Value)) <= 4, $"{kernel}: {string.Join(", ", depots.Select(m => m.Value))}");
        }
    }

    [Theory]
    // bf16 keeps fp32's top 16 bits: 1 = 0x3F800000 -> 0x3F80, -2 = 0xC0000000 -> 0xC000.
    [InlineData(0x3F800000u, (ushort)0x3F80)]
    [InlineData(0xC0000000u, (ushort)0xC000)]
    // 1 + 2^-8 = 0x3F808000: exactly halfway between 0x3F80 and 0x3F81; ties go to the even 0x3F80.
    [InlineData(0x3F808000u, (ushort)0x3F80)]
    // 1 + 3 2^-8 = 0x3F818000: halfway between 0x3F81 and 0x3F82; the even one is 0x3F82 (rounds up).
    [InlineData(0x3F818000u, (ushort)0x3F82)]
    // One ulp above the tie (0x3F808001) rounds up; one below (0x3F807FFF) rounds down.
    [InlineData(0x3F808001u, (ushort)0x3F81)]
    [InlineData(0x3F807FFFu, (ushort)0x3F80)]
    // float.MaxValue 0x7F7FFFFF is past bf16's largest finite 0x7F7F (+ half an ulp): infinity 0x7F80.
    [InlineData(0x7F7FFFFFu, (ushort)0x7F80)]
    [InlineData(0xFF800000u, (ushort)0xFF80)]
    [InlineData(0x00000000u, (ushort)0x0000)]
    [InlineData(0x80000000u, (ushort)0x8000)]
    public void RoundsToNearestEven(uint floatBits, ushort expected) =>
        Assert.Equal(expected, TensorCoreGemmKernels.ToBf16(BitConverter.UInt32BitsToSingle(floatBits)));

    [Fact]
    public void NaNStaysNaN()
    {
        // 0x7FFFFFFF would carry into the sign bit under plain rounding (0x8000 = -0).
        Assert.True(float.IsNaN(TensorCoreGemmKernels.FromBf16(TensorCoreGemmKernels.ToBf16(BitConverter.UInt32BitsToSingle(0x7FFFFFFFu)))));
        Assert.True(float.IsNaN(TensorCoreGemmKernels.FromBf16(TensorCoreGemmKernels.ToBf16(float.NaN))));
    }

    [Fact]
    public void EveryBf16RoundTripsExactly()
    {
        // A float that already is a bf16 is its own nearest bf16: bits -> float -> bits is the identity.
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            float value = TensorCoreGemmKernels.FromBf16((ushort)bits);
            if (float.IsNaN(value)) continue;
            Assert.Equal((ushort)bits, TensorCoreGemmKernels.ToBf16(value));
        }
    }

    [Fact]
    public void ConversionKernelMatchesTheHost()
    {
        var device = fixture.Device;
        float[] values = [1f, -2f, 1f + 1f / 256, 1f + 3f / 256, float.MaxValue, float.NegativeInfinity, 0.1f, -1e-3f, 12345.678f];
        using var x = device.Pool.Rent<float>(values.Length);
        using var y = device.Pool.Rent<ushort>(values.Length);
        x.Upload(values);
        TensorCoreGemmKernels.ToBf16(device, x.View, y.View);
        var bits = new ushort[values.Length];
        y.Download(bits);
        Assert.Equal(values.Select(TensorCoreGemmKernels.ToBf16).ToArray(), bits);
    }

    [Theory]
    [InlineData(100, 128, 64)]  // M not a multiple of 128
    [InlineData(128, 96, 64)]   // N not a multiple of 128
    [InlineData(128, 128, 32)]  // K not a multiple of 64
    [InlineData(0, 128, 64)]
    public void LauncherRefusesShapesItDoesNotHandle(int m, int n, int k)
    {
        var device = fixture.Device;
        using var a = device.Pool.Rent<ushort>(128 * 128);
        using var bt = device.Pool.Rent<ushort>(128 * 128);
        using var c = device.Pool.Rent<float>(128 * 128);
        Assert.Throws<ArgumentException>(() => TensorCoreGemmKernels.Gemm(device, a.View, bt.View, c.View, m, n, k));
    }

    [Fact]
    public void LauncherRunsOnlyOnCuda()
    {
        var device = fixture.Device;
        using var a = device.Pool.Rent<ushort>(128 * 64);
        using var bt = device.Pool.Rent<ushort>(128 * 64);
        using var c = device.Pool.Rent<float>(128 * 128);
        Assert.Throws<NotSupportedException>(() => TensorCoreGemmKernels.Gemm(device, a.View, bt.View, c.View, 128, 128, 64));
    }
}
