// The attention kernels against Ops/Attention.cs (forward, and dq, dk, dv through Autograd), on
// ILGPU's CPU accelerator at tiny shapes: plain causal, grouped-query with a key mask (including a
// query with no allowed key, which must give zeros), and a query offset as in KV-cache decoding.
// v2 (a warp per query row, keys in turn) and v1 (a thread per row) are each checked against the
// reference and against each other, P included, at head sizes that leave lanes idle (D = 8, 40, 72)
// or fill all eight of a lane's registers (D = 256), and at row counts that leave warps of the last
// group idle. v3 (keys across lanes, forward and dq; the launchers' choice) likewise against the
// reference and v2, decoding (T = 1) and with several queries a row, with key counts around the 32
// lanes, left padding, rows with no allowed key and grouped-query heads; and Forward is checked to
// pick v3 unless the head is larger than v2 and v3 take.
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
        var v2 = AttentionKernels.Host.Run(device, q.Data, k.Data, v.Data, keyMask, shape, dOutput, forwardVersion: 2);
        var v1 = AttentionKernels.Host.Run(device, q.Data, k.Data, v.Data, keyMask, shape, dOutput, forwardVersion: 1);
        foreach (var (expected, actual) in new[] { (output.Data, v2.Output), (q.Grad!, v2.Dq), (k.Grad!, v2.Dk), (v.Grad!, v2.Dv),
                                                   (v1.Output, v2.Output), (v1.Dq, v2.Dq), (v1.Dk, v2.Dk), (v1.Dv, v2.Dv) })
            AssertClose(expected, actual, 1e-5f);
        AssertClose(Forward(q.Data, k.Data, v.Data, keyMask, shape, version: 1).Probs, Forward(q.Data, k.Data, v.Data, keyMask, shape, version: 2).Probs, 1e-5f);
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
        var (_, probs) = Forward(q, kv, kv, [false, false, true], a, version: 2);
        Assert.Equal(new float[6], probs);
    }

    [Theory]
    [InlineData(2, 40, 4, 2, 8, 39, 3)]     // decoding, 40 keys (a second block of 8), grouped-query, left padding 3 and 6: 8 rows
    [InlineData(1, 70, 2, 2, 40, 69, -1)]   // 70 keys (three blocks, the last of 6), no mask, D = 40; 2 rows, 2 warps idle
    [InlineData(3, 7, 1, 1, 72, 6, 3)]      // 7 keys (< 32 lanes), D = 72; padding 3, 6 (one key left) and 9 (no key: zeros)
    [InlineData(2, 40, 4, 2, 64, 20, 2)]    // offset 20: keys 21..39 are not allowed yet (P zeros there)
    [InlineData(1, 33, 4, 4, 256, 32, 1)]   // D = 256, 33 keys: the second block holds one key
    [InlineData(5, 64, 1, 1, 8, 63, 13)]    // two full blocks; 5 rows (3 warps of the second group idle); row 4 padded 65: no key
    [InlineData(2, 1, 4, 2, 8, 0, -1)]      // a single key: P = 1, o = its value
    [InlineData(2, 9, 2, 1, 16, -1, 2, 9)]  // training: T = S = 9, causal, padding
    [InlineData(1, 40, 4, 2, 8, 30, -1, 5)] // a prefill of 5 queries after 35 cached keys (offset 30 -> keys 0..30+t)
    public void V3MatchesReferenceAndV2(int B, int S, int Hq, int Hkv, int D, int offset, int padding, int T = 1)
    {
        // Batch b's first padding * (b + 1) keys are padding (left-padded prompts); padding -1: no mask.
        var rng = new Random(B * 1000 + S * 10 + Hq + D);
        var q = Tensor.Parameter(GradCheck.Random(rng, 1f, B, T, Hq, D).Data, B, T, Hq, D);
        var k = Tensor.Parameter(GradCheck.Random(rng, 1f, B, S, Hkv, D).Data, B, S, Hkv, D);
        var v = Tensor.Parameter(GradCheck.Random(rng, 1f, B, S, Hkv, D).Data, B, S, Hkv, D);
        bool[]? keyMask = padding < 0 ? null : Enumerable.Range(0, B * S).Select(i => i % S >= padding * (i / S + 1)).ToArray();
        var dOutput = GradCheck.Random(rng, 1f, B, T, Hq, D).Data;
        var output = Op.Attention(q, k, v, keyMask, offset);
        Autograd.Backward(output, dOutput);

        var shape = AttentionKernels.Shape(B, T, S, Hq, Hkv, D, offset, keyMask != null);
        Assert.Equal(3, AttentionKernels.ForwardVersion(shape));
        var v3 = AttentionKernels.Host.Run(device, q.Data, k.Data, v.Data, keyMask, shape, dOutput, forwardVersion: 3);
        var v2 = AttentionKernels.Host.Run(device, q.Data, k.Data, v.Data, keyMask, shape, dOutput, forwardVersion: 2);
        // the backward (v2) reads v3's P: its gradients match only if P does
        foreach (var (expected, actual) in new[] { (output.Data, v3.Output), (q.Grad!, v3.Dq), (k.Grad!, v3.Dk), (v.Grad!, v3.Dv),
                                                   (v2.Output, v3.Output), (v2.Dq, v3.Dq), (v2.Dk, v3.Dk), (v2.Dv, v3.Dv) })
            AssertClose(expected, actual, 1e-5f);
        var (forwardOutput, probs) = Forward(q.Data, k.Data, v.Data, keyMask, shape, version: 0);   // v3, P starting as NaN
        Assert.Equal(v3.Output, forwardOutput);
        AssertClose(Forward(q.Data, k.Data, v.Data, keyMask, shape, version: 2).Probs, probs, 1e-5f);
        AssertClose(Forward(q.Data, k.Data, v.Data, keyMask, shape, version: 1).Probs, probs, 1e-5f);
        if (padding >= 0 && T == 1)   // a row whose allowed keys are all padding: zeros out, and zeros in P
            for (int b = 0; b < B; b++)
                if (padding * (b + 1) > offset)
                {
                    Assert.All(forwardOutput.AsSpan(b * Hq * D, Hq * D).ToArray(), x => Assert.Equal(0f, x));
                    Assert.All(probs.AsSpan(b * Hq * S, Hq * S).ToArray(), p => Assert.Equal(0f, p));
                }
    }

    [Fact]
    public void ForwardPicksV3UnlessTheHeadIsTooLarge()
    {
        // ForwardVersion says which; the launcher's output is bit for bit that version's (their sums run in different orders).
        Assert.Equal(3, AttentionKernels.ForwardVersion(AttentionKernels.Shape(2, 1, 9, 2, 1, 16, -1, hasMask: false)));
        Assert.Equal(3, AttentionKernels.ForwardVersion(AttentionKernels.Shape(2, 3, 9, 2, 1, 16, -1, hasMask: false)));
        Assert.Equal(1, AttentionKernels.ForwardVersion(AttentionKernels.Shape(2, 1, 9, 2, 1, AttentionKernels.MaxHeadDim + 1, -1, hasMask: false)));
        foreach (var (T, version) in new[] { (1, 3), (3, 3) })
        {
            var a = AttentionKernels.Shape(2, T, 9, 2, 1, 16, -1, hasMask: false);
            var rng = new Random(T);
            var q = GradCheck.Random(rng, 1f, 2, T, 2, 16).Data;
            var k = GradCheck.Random(rng, 1f, 2, 9, 1, 16).Data;
            var v = GradCheck.Random(rng, 1f, 2, 9, 1, 16).Data;
            var chosen = AttentionKernels.Host.Run(device, q, k, v, null, a, new float[q.Length], forwardVersion: version);
            Assert.Equal(chosen.Output, Forward(q, k, v, null, a, version: 0).Output);
        }
    }

    /// <summary>
    /// o and P (B, Hq, T, S) from one forward into buffers that start as NaN: by Forward (version 0, its
    /// choice), ForwardV1 or ForwardV2.
    /// </summary>
    private (float[] Output, float[] Probs) Forward(float[] q, float[] k, float[] v, bool[]? keyMask, AttentionShape a, int version)
    {
        int[] mask = keyMask == null ? [1] : Array.ConvertAll(keyMask, m => m ? 1 : 0);
        using var deviceQ = device.UploadToPool<float>(q);
        using var deviceK = device.UploadToPool<float>(k);
        using var deviceV = device.UploadToPool<float>(v);
        using var deviceMask = device.UploadToPool<int>(mask);
        using var output = device.UploadToPool<float>(Enumerable.Repeat(float.NaN, q.Length).ToArray());
        using var probs = device.UploadToPool<float>(Enumerable.Repeat(float.NaN, a.B * a.Hq * a.T * a.S).ToArray());
        if (version == 1) AttentionKernels.ForwardV1(device, deviceQ.View, deviceK.View, deviceV.View, deviceMask.View, output.View, probs.View, a);
        else if (version == 2) AttentionKernels.ForwardV2(device, deviceQ.View, deviceK.View, deviceV.View, deviceMask.View, output.View, probs.View, a);
        else AttentionKernels.Forward(device, deviceQ.View, deviceK.View, deviceV.View, deviceMask.View, output.View, probs.View, a);
        return (Device.DownloadArray<float>(output.View), Device.DownloadArray<float>(probs.View));
    }
}
