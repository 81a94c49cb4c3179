// The attention kernels against Ops/Attention.cs (forward, and dq, dk, dv through Autograd), on
// ILGPU's CPU accelerator at tiny shapes: plain causal, grouped-query with a key mask (including a
// query with no allowed key, which must give zeros), and a query offset as in KV-cache decoding.
// v2 (a warp per query row, the launchers' default) and v1 (a thread per row) are each checked
// against the reference and against each other, P included, at head sizes that leave lanes idle
// (D = 8, 40, 72) or fill all eight of a lane's registers (D = 256), and at row counts that leave
// warps of the last group idle.
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

    [Theory]
    [InlineData(1, 1, 7, 4, 2, 8, 6, true)]      // decoding one token, grouped-query, padding: 4 rows, one group
    [InlineData(2, 1, 5, 4, 4, 40, 4, false)]    // decoding, D = 40: lanes 8..31 idle in the second chunk
    [InlineData(1, 3, 3, 1, 1, 40, -1, true)]    // 3 rows (a warp of the group idle); queries 0 and 1 see only padding
    [InlineData(2, 3, 4, 4, 2, 8, 1, true)]      // query offset 1, grouped-query, padding: 24 rows, 6 groups
    [InlineData(1, 2, 40, 2, 1, 64, -1, false)]  // 40 keys: P's second pass strides past one warp's 32 lanes
    [InlineData(1, 2, 3, 1, 1, 72, -1, true)]    // three chunks, the third partly idle
    [InlineData(1, 1, 2, 1, 1, 256, -1, false)]  // D = 256: every register of a lane's row in use
    public void V2AndV1MatchReferenceAndEachOther(int B, int T, int S, int Hq, int Hkv, int D, int offset, bool masked)
    {
        var rng = new Random(B * 1000 + T * 100 + S * 10 + Hq + D);
        var q = Tensor.Parameter(GradCheck.Random(rng, 1f, B, T, Hq, D).Data, B, T, Hq, D);
        var k = Tensor.Parameter(GradCheck.Random(rng, 1f, B, S, Hkv, D).Data, B, S, Hkv, D);
        var v = Tensor.Parameter(GradCheck.Random(rng, 1f, B, S, Hkv, D).Data, B, S, Hkv, D);
        bool[]? keyMask = masked ? Enumerable.Range(0, B * S).Select(i => i >= 2).ToArray() : null;
        var dOutput = GradCheck.Random(rng, 1f, B, T, Hq, D).Data;
        var output = Op.Attention(q, k, v, keyMask, offset);
        Autograd.Backward(output, dOutput);

        var shape = AttentionKernels.Shape(B, T, S, Hq, Hkv, D, offset, masked);
        var v2 = AttentionKernels.Host.Run(device, q.Data, k.Data, v.Data, keyMask, shape, dOutput);
        var v1 = AttentionKernels.Host.Run(device, q.Data, k.Data, v.Data, keyMask, shape, dOutput, v1: true);
        foreach (var (expected, actual) in new[] { (output.Data, v2.Output), (q.Grad!, v2.Dq), (k.Grad!, v2.Dk), (v.Grad!, v2.Dv),
                                                   (v1.Output, v2.Output), (v1.Dq, v2.Dq), (v1.Dk, v2.Dk), (v1.Dv, v2.Dv) })
            AssertClose(expected, actual, 1e-5f);
        AssertClose(Probabilities(q.Data, k.Data, v.Data, keyMask, shape, v1: true), Probabilities(q.Data, k.Data, v.Data, keyMask, shape, v1: false), 1e-5f);
    }

    [Fact]
    public void V2WritesEveryProbabilityAndZerosWhereNoKeyIsAllowed()
    {
        // B 1, T 2, S 3, one head, D 4, offset 0, keys 0 and 1 padding: query 0 may see key 0 only (padding),
        // so its row of P and its output are zeros; query 1 sees keys 0, 1 (both padding): zeros too.
        // P starts as NaN, so an entry the kernel did not write would show.
        var a = AttentionKernels.Shape(1, 2, 3, 1, 1, 4, 0, hasMask: true);
        var rng = new Random(7);
        var q = GradCheck.Random(rng, 1f, 1, 2, 1, 4).Data;
        var kv = GradCheck.Random(rng, 1f, 1, 3, 1, 4).Data;
        var probs = Probabilities(q, kv, kv, [false, false, true], a, v1: false);
        Assert.Equal(new float[6], probs);
    }

    /// <summary>P (B, Hq, T, S) from one forward, by v1 or v2, into a buffer that starts as NaN.</summary>
    private float[] Probabilities(float[] q, float[] k, float[] v, bool[]? keyMask, AttentionShape a, bool v1)
    {
        int[] mask = keyMask == null ? [1] : Array.ConvertAll(keyMask, m => m ? 1 : 0);
        using var deviceQ = device.UploadToPool<float>(q);
        using var deviceK = device.UploadToPool<float>(k);
        using var deviceV = device.UploadToPool<float>(v);
        using var deviceMask = device.UploadToPool<int>(mask);
        using var output = device.Zeros<float>(q.Length);
        using var probs = device.UploadToPool<float>(Enumerable.Repeat(float.NaN, a.B * a.Hq * a.T * a.S).ToArray());
        if (v1) AttentionKernels.ForwardV1(device, deviceQ.View, deviceK.View, deviceV.View, deviceMask.View, output.View, probs.View, a);
        else AttentionKernels.Forward(device, deviceQ.View, deviceK.View, deviceV.View, deviceMask.View, output.View, probs.View, a);
        return Device.DownloadArray<float>(probs.View);
    }
}
