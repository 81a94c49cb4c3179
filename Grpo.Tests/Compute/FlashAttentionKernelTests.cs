// Attention v4 (Compute/Kernels/FlashAttentionKernels.cs, FlashAttentionBackward.cs) against Ops/Attention.cs,
// forward and dq, dk, dv through Autograd, on ILGPU's CPU accelerator. The tiles are 32 queries by 32 keys,
// so the shapes are chosen around them: T and S not multiples of 32 (a partly filled last tile), more than
// one tile of each (the online softmax rescales across tiles; the causal walk stops at the diagonal), left
// padding that leaves a query with no allowed key (zeros, L = +inf, zero gradient), grouped-query heads
// (Hq 4, Hkv 2: dk and dv summed over two heads in one group), a query offset with T < S (a prefill after
// cached keys), and heads of 16, 32 and 64 (D < 64 leaves threads of the output columns idle).
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Ops;
using static Grpo.Tests.Compute.KernelTestHelpers;

namespace Grpo.Tests.Compute;

[Collection("cpu-accelerator")]
public class FlashAttentionKernelTests(CpuAcceleratorFixture fixture)
{
    private readonly Device device = fixture.Device;

    [Fact]
    public void SingleKeyGivesItsValueAndItsScoreAsLogSumExp()
    {
        // one query, one key: P = [1] whatever the score, so o = v; L = score = q . k / sqrt(4) = (1*2 + 2*0.5) / 2 = 1.5
        var a = AttentionKernels.Shape(1, 1, 1, 1, 1, 4, -1, hasMask: false);
        var (output, logSumExp, _, _, _) = FlashAttentionKernels.Host.Run(device, [1, 2, 0, 0], [2, 0.5f, 0, 0], [7, 8, 9, 10], null, a, new float[4]);
        Assert.Equal([7f, 8, 9, 10], output);
        Assert.Equal(1.5f, logSumExp[0], 5);
    }

    [Theory]
    [InlineData(2, 37, 37, 2, 2, 16, -1, 0)]    // causal, T = S = 37: two tiles of each, the second of 5
    [InlineData(1, 70, 70, 4, 2, 32, -1, 3)]    // grouped-query, three tiles, left padding 3
    [InlineData(2, 9, 9, 1, 1, 64, -1, 4)]      // D = 64, one partial tile; padding 4 and 8 (batch 1's queries 0..7 see no key)
    [InlineData(1, 20, 50, 4, 2, 16, 30, 2)]    // a prefill: 20 queries after 30 keys (offset 30 of S = 50), grouped-query
    [InlineData(2, 33, 40, 2, 1, 8, 3, 0)]      // offset 3 with T < S: keys 36..39 never allowed; D = 8
    public void V4MatchesReference(int B, int T, int S, int Hq, int Hkv, int D, int offset, int padding)
    {
        // Batch b's first padding * (b + 1) keys are padding (left-padded prompts); padding 0: no mask.
        var rng = new Random(B * 1000 + T * 100 + S * 10 + Hq + D);
        var q = Tensor.Parameter(GradCheck.Random(rng, 1f, B, T, Hq, D).Data, B, T, Hq, D);
        var k = Tensor.Parameter(GradCheck.Random(rng, 1f, B, S, Hkv, D).Data, B, S, Hkv, D);
        var v = Tensor.Parameter(GradCheck.Random(rng, 1f, B, S, Hkv, D).Data, B, S, Hkv, D);
        bool[]? keyMask = padding == 0 ? null : Enumerable.Range(0, B * S).Select(i => i % S >= padding * (i / S + 1)).ToArray();
        var dOutput = GradCheck.Random(rng, 1f, B, T, Hq, D).Data;
        var output = Op.Attention(q, k, v, keyMask, offset);
        Autograd.Backward(output, dOutput);

        var shape = AttentionKernels.Shape(B, T, S, Hq, Hkv, D, offset, keyMask != null);
        var flash = FlashAttentionKernels.Host.Run(device, q.Data, k.Data, v.Data, keyMask, shape, dOutput);
        AssertClose(output.Data, flash.Output, 1e-5f);
        AssertClose(q.Grad!, flash.Dq, 1e-5f);
        AssertClose(k.Grad!, flash.Dk, 1e-5f);
        AssertClose(v.Grad!, flash.Dv, 1e-5f);
        // L: +inf exactly for a row with no allowed key, whose output is zeros
        for (int b = 0; b < B; b++)
            for (int h = 0; h < Hq; h++)
                for (int t = 0; t < T; t++)
                {
                    int position = shape.Offset + t, firstOpen = padding * (b + 1);
                    bool none = padding > 0 && firstOpen > Math.Min(position, S - 1);
                    Assert.Equal(none, float.IsPositiveInfinity(flash.LogSumExp[(b * Hq + h) * T + t]));
                }
    }

    [Theory]
    [InlineData(3, 3)]    // T = S = 9 with batch 0's keys 0..2 padding: queries 0..2 see nothing
    public void ARowWithNoAllowedKeyGivesZerosAndPassesNoGradient(int B, int padding)
    {
        int T = 9, S = 9, H = 2, D = 16;
        var rng = new Random(5);
        var q = GradCheck.Random(rng, 1f, B, T, H, D).Data;
        var k = GradCheck.Random(rng, 1f, B, S, H, D).Data;
        var v = GradCheck.Random(rng, 1f, B, S, H, D).Data;
        bool[] keyMask = Enumerable.Range(0, B * S).Select(i => i >= padding).ToArray();   // only batch 0 is padded
        var a = AttentionKernels.Shape(B, T, S, H, H, D, -1, hasMask: true);
        var flash = FlashAttentionKernels.Host.Run(device, q, k, v, keyMask, a, GradCheck.Random(rng, 1f, B, T, H, D).Data);
        for (int t = 0; t < padding; t++)   // batch 0, queries 0 .. padding - 1: o = 0 and dq = 0, every head
            for (int i = 0; i < H * D; i++)
            {
                Assert.Equal(0f, flash.Output[t * H * D + i]);
                Assert.Equal(0f, flash.Dq[t * H * D + i]);
            }
        for (int i = 0; i < padding * H * D; i++)   // padding keys get no gradient
        {
            Assert.Equal(0f, flash.Dk[i]);
            Assert.Equal(0f, flash.Dv[i]);
        }
    }

    [Fact]
    public void SupportsHeadsUpToSixtyFourInWholeVectors()
    {
        Assert.True(FlashAttentionKernels.Supports(AttentionKernels.Shape(1, 2, 2, 1, 1, 64, -1, hasMask: false)));
        Assert.True(FlashAttentionKernels.Supports(AttentionKernels.Shape(1, 2, 2, 1, 1, 16, -1, hasMask: false)));
        Assert.False(FlashAttentionKernels.Supports(AttentionKernels.Shape(1, 2, 2, 1, 1, 128, -1, hasMask: false)));
        Assert.False(FlashAttentionKernels.Supports(AttentionKernels.Shape(1, 2, 2, 1, 1, 6, -1, hasMask: false)));
    }
}
