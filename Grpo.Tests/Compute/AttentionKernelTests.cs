// The attention kernels against Ops/Attention.cs (forward, and dq, dk, dv through Autograd), on
// ILGPU's CPU accelerator at tiny shapes: plain causal, grouped-query with a key mask (including a
// query with no allowed key, which must give zeros), and a query offset as in KV-cache decoding.
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Ops;
using static Grpo.Tests.Compute.KernelTestHelpers;

namespace Grpo.Tests.Compute;

[Collection("cpu-accelerator")]
public class AttentionKernelTests(CpuAcceleratorFixture fixture)
{
    private readonly Device device = fixture.Device;

    [Fact]
    public void SingleKeyGivesItsValue()
    {
        // one query, one key: P = [1] whatever the score, so o = v
        var a = AttentionKernels.Shape(1, 1, 1, 1, 1, 2, -1, hasMask: false);
        var (output, _, _, _) = AttentionKernels.Host.Run(device, [3, -1], [0.5f, 2], [7, 8], null, a, [0, 0]);
        Assert.Equal([7f, 8], output);
    }

    [Theory]
    [InlineData(2, 4, 4, 2, 2, 4, -1, false)]   // causal, one kv head per query head
    [InlineData(2, 4, 4, 4, 2, 4, -1, true)]    // grouped-query with padding
    [InlineData(1, 2, 5, 2, 1, 6, -1, true)]    // decoding: 2 new queries after 3 cached keys
    [InlineData(1, 3, 5, 2, 2, 4, 1, false)]    // an explicit query offset
    public void AttentionMatchesReference(int B, int T, int S, int Hq, int Hkv, int D, int offset, bool masked)
    {
        var rng = new Random(B * 1000 + T * 100 + S * 10 + Hq + D);
        var q = Tensor.Parameter(GradCheck.Random(rng, 1f, B, T, Hq, D).Data, B, T, Hq, D);
        var k = Tensor.Parameter(GradCheck.Random(rng, 1f, B, S, Hkv, D).Data, B, S, Hkv, D);
        var v = Tensor.Parameter(GradCheck.Random(rng, 1f, B, S, Hkv, D).Data, B, S, Hkv, D);
        // Batch 0's first two keys are padding, so with a mask its query 0 (position S - T when decoding, else 0) may see nothing.
        bool[]? keyMask = masked ? Enumerable.Range(0, B * S).Select(i => i >= 2).ToArray() : null;
        var dOutput = GradCheck.Random(rng, 1f, B, T, Hq, D).Data;
        var output = Op.Attention(q, k, v, keyMask, offset);
        Autograd.Backward(output, dOutput);

        var shape = AttentionKernels.Shape(B, T, S, Hq, Hkv, D, offset, masked);
        var (deviceOutput, dq, dk, dv) = AttentionKernels.Host.Run(device, q.Data, k.Data, v.Data, keyMask, shape, dOutput);
        AssertClose(output.Data, deviceOutput, 1e-5f);
        AssertClose(q.Grad!, dq, 1e-5f);
        AssertClose(k.Grad!, dk, 1e-5f);
        AssertClose(v.Grad!, dv, 1e-5f);
    }
}
