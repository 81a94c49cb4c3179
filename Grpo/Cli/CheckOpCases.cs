// `grpo check`'s cases for the op kernels (Compute/Kernels/*): each op run forward and backward on the
// device (through its Host round trip) and on the CPU reference (Grpo.Ops, Optim, Sampling, Rl),
// one line per output tensor. Each op runs once on each side and its outputs are compared one by one;
// an exception in an op makes each of its lines NOT OK with a one-line reason, and the next op runs.
//
// Tolerances (scaled: max |gpu - cpu| <= tol * max |cpu|). The GPU's exp and log are ex2.approx /
// lg2.approx (relative error ~1e-7, more after the argument's scaling) and its sums run in another
// order than the CPU's SIMD sums: 1e-5 for forwards of one short reduction, 1e-4 for backwards and
// long sums (attention over 128 keys, dw over 8192 rows, rows of 32000 logits). Gathers, the
// embedding's ordered scatter-add and the sampler's tokens must agree exactly (0).
// Sizes: realistic = the gpu-small preset's training shapes (batch 64 x 128 tokens, width 256, FFN 768,
// 4 query heads over 2 kv heads of 64) and the mid preset's vocabulary (32000) for the log-prob rows
// and the sampler; small = shapes ILGPU's CPU accelerator runs in seconds.
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Ops;
using Grpo.Optim;
using Grpo.Rl;
using Grpo.Sampling;
using Case = Grpo.Cli.CheckCommand.Case;

namespace Grpo.Cli;

internal static class CheckOpCases
{
    public static IEnumerable<Case> Cases(Rng rng, bool small)
    {
        var (rows, width, ffn, vocab, logProbRows) = small ? (24, 32, 48, 200, 12) : (64 * 128, 256, 768, 32000, 1024);
        var (B, T, Hq, Hkv, D) = small ? (2, 8, 4, 2, 8) : (64, 128, 4, 2, 64);

        // Reductions: the sum along the last axis (row groups) and the mean along the first (one thread per output).
        var x = Random(rng, 1f, rows, ffn);
        var dyRows = Random(rng, 1f, rows).Data;
        foreach (var c in Outputs("sum", $"({rows}, {ffn}) axis -1",
            () => WithGrad(t => Op.Sum(t, -1), x, dyRows),
            d => [ReduceKernels.Host.Forward(d, x.Data, rows, ffn, 1, false), ReduceKernels.Host.Backward(d, dyRows, new float[x.Size], rows, ffn, 1, false)],
            ("forward", 1e-5), ("backward dx", 1e-6))) yield return c;
        var narrow = Random(rng, 1f, rows, width);
        var dyColumns = Random(rng, 1f, width).Data;
        foreach (var c in Outputs("mean", $"({rows}, {width}) axis 0",
            () => WithGrad(t => Op.Mean(t, 0), narrow, dyColumns),
            d => [ReduceKernels.Host.Forward(d, narrow.Data, 1, rows, width, true), ReduceKernels.Host.Backward(d, dyColumns, new float[narrow.Size], 1, rows, width, true)],
            ("forward", 1e-5), ("backward dx", 1e-6))) yield return c;

        // Softmax and log-softmax along the last axis.
        var scores = Random(rng, 8f, rows, ffn);
        var dyScores = Random(rng, 1f, rows, ffn).Data;
        foreach (bool log in new[] { false, true })
            foreach (var c in Outputs(log ? "logsoftmax" : "softmax", $"({rows}, {ffn})",
                () => WithGrad(t => log ? Op.LogSoftmax(t) : Op.Softmax(t), scores, dyScores),
                d =>
                {
                    var y = SoftmaxKernels.Host.Forward(d, scores.Data, rows, ffn, log);
                    return [y, SoftmaxKernels.Host.Backward(d, y, dyScores, new float[scores.Size], rows, ffn, log)];
                },
                ("forward", 1e-5), ("backward dx", 1e-4))) yield return c;

        // RMSNorm over the model width.
        var hidden = Random(rng, 2f, rows, width);
        var normWeight = Random(rng, 1f, width);
        var dyHidden = Random(rng, 1f, rows, width).Data;
        foreach (var c in Outputs("rmsnorm", $"({rows}, {width})",
            () =>
            {
                var w = Tensor.Parameter((float[])normWeight.Data.Clone(), width);
                var yAndDx = WithGrad(t => Op.RmsNorm(t, w, 1e-5f), hidden, dyHidden);
                return [yAndDx[0], yAndDx[1], w.Grad!];
            },
            d =>
            {
                var (y, dx, dw) = RmsNormKernels.Host.Run(d, hidden.Data, normWeight.Data, 1e-5f, dyHidden, new float[hidden.Size], new float[width]);
                return [y, dx, dw];
            },
            ("forward", 1e-5), ("backward dx", 1e-4), ("backward dweight", 1e-4))) yield return c;

        // Embedding: rows tokens drawn from a 128-token table, so most ids repeat (the scatter-add's hard case).
        int tableRows = 128;
        var table = Random(rng, 1f, tableRows, width);
        int[] ids = Enumerable.Range(0, rows).Select(_ => rng.NextInt(tableRows)).ToArray();
        foreach (var c in Outputs("embedding", $"({tableRows}, {width}) [{rows} ids]",
            () => WithGrad(t => Op.Embedding(t, ids), table, dyHidden),
            d =>
            {
                var (y, dTable) = EmbeddingKernels.Host.Run(d, table.Data, width, ids, dyHidden, new float[table.Size]);
                return [y, dTable];
            },
            ("forward (gather)", 0), ("backward (ordered scatter-add)", 0))) yield return c;

        // SiLU and SwiGLU over the FFN width.
        var gate = Random(rng, 6f, rows, ffn);
        var up = Random(rng, 2f, rows, ffn);
        foreach (var c in Outputs("silu", $"({rows}, {ffn})",
            () => WithGrad(Op.Silu, gate, dyScores),
            d =>
            {
                var (y, dx) = SiluKernels.Host.Silu(d, gate.Data, dyScores, new float[gate.Size]);
                return [y, dx];
            },
            ("forward", 1e-5), ("backward dx", 1e-5))) yield return c;
        foreach (var c in Outputs("swiglu", $"({rows}, {ffn})",
            () =>
            {
                var upParameter = Tensor.Parameter((float[])up.Data.Clone(), up.Shape);
                var yAndDGate = WithGrad(g => Op.SwiGlu(g, upParameter), gate, dyScores);
                return [yAndDGate[0], yAndDGate[1], upParameter.Grad!];
            },
            d =>
            {
                var (y, dGate, dUp) = SiluKernels.Host.SwiGlu(d, gate.Data, up.Data, dyScores, new float[gate.Size], new float[up.Size]);
                return [y, dGate, dUp];
            },
            ("forward", 1e-5), ("backward dgate", 1e-5), ("backward dup", 1e-5))) yield return c;

        // RoPE on queries (B, T, Hq, D) with left-padded rows: row b's positions start at 0 after b % 4 pads.
        var queries = Random(rng, 1f, B, T, Hq, D);
        int[] positions = Enumerable.Range(0, B * T).Select(i => Math.Max(0, i % T - i / T % 4)).ToArray();
        var dyQueries = Random(rng, 1f, B, T, Hq, D).Data;
        foreach (var c in Outputs("rope", $"({B}, {T}, {Hq}, {D})",
            () => WithGrad(t => Op.Rope(t, positions, 10000f), queries, dyQueries),
            d =>
            {
                var (y, dx) = RopeKernels.Host.Run(d, queries.Data, B * T, Hq, D, positions, 10000f, dyQueries, new float[queries.Size]);
                return [y, dx];
            },
            ("forward", 1e-5), ("backward dx", 1e-5))) yield return c;

        foreach (var c in AttentionCases(rng, B, T, Hq, Hkv, D, queries, dyQueries)) yield return c;
        foreach (var c in CheckTrainingCases.Cases(rng, small, logProbRows, vocab)) yield return c;
    }

    private static IEnumerable<Case> AttentionCases(Rng rng, int B, int T, int Hq, int Hkv, int D, Tensor q, float[] dOutput)
    {
        var k = Random(rng, 1f, B, T, Hkv, D);
        var v = Random(rng, 1f, B, T, Hkv, D);
        bool[] keyMask = Enumerable.Range(0, B * T).Select(i => i % T >= i / T % 4).ToArray();   // b % 4 left pads
        var shape = AttentionKernels.Shape(B, T, T, Hq, Hkv, D, -1, hasMask: true);
        foreach (var c in Outputs("attention", $"q ({B}, {T}, {Hq}, {D}) kv {Hkv} causal pad",
            () =>
            {
                var qp = Tensor.Parameter((float[])q.Data.Clone(), q.Shape);
                var kp = Tensor.Parameter((float[])k.Data.Clone(), k.Shape);
                var vp = Tensor.Parameter((float[])v.Data.Clone(), v.Shape);
                var output = Op.Attention(qp, kp, vp, keyMask);
                Autograd.Backward(output, dOutput);
                return [output.Data, qp.Grad!, kp.Grad!, vp.Grad!];
            },
            d =>
            {
                var (output, dq, dk, dv) = AttentionKernels.Host.Run(d, q.Data, k.Data, v.Data, keyMask, shape, dOutput);
                return [output, dq, dk, dv];
            },
            ("forward", 1e-4), ("backward dq", 1e-4), ("backward dk", 1e-4), ("backward dv", 1e-4))) yield return c;

        // v4 (tiled, what Op.Attention runs on a GPU for training and prefill) at the same training shape, and
        // a prefill of the last T / 2 queries after the first T / 2 keys (queryOffset T / 2, T < S).
        foreach (var c in Outputs("attention v4", $"q ({B}, {T}, {Hq}, {D}) kv {Hkv} causal pad",
            () =>
            {
                var qp = Tensor.Parameter((float[])q.Data.Clone(), q.Shape);
                var kp = Tensor.Parameter((float[])k.Data.Clone(), k.Shape);
                var vp = Tensor.Parameter((float[])v.Data.Clone(), v.Shape);
                var output = Op.Attention(qp, kp, vp, keyMask);
                Autograd.Backward(output, dOutput);
                return [output.Data, qp.Grad!, kp.Grad!, vp.Grad!];
            },
            d =>
            {
                var (output, _, dq, dk, dv) = FlashAttentionKernels.Host.Run(d, q.Data, k.Data, v.Data, keyMask, shape, dOutput);
                return [output, dq, dk, dv];
            },
            ("forward", 1e-4), ("backward dq", 1e-4), ("backward dk", 1e-4), ("backward dv", 1e-4))) yield return c;
        int half = T / 2, halfFloats = T / 2 * Hq * D;
        float[] LastHalf(float[] x) => Enumerable.Range(0, B).SelectMany(b => x.AsSpan((b * T + T - half) * Hq * D, halfFloats).ToArray()).ToArray();
        var prefillQ = new Tensor(LastHalf(q.Data), B, half, Hq, D);
        var prefillDOutput = LastHalf(dOutput);
        var prefillShape = AttentionKernels.Shape(B, half, T, Hq, Hkv, D, T - half, hasMask: true);
        foreach (var c in Outputs("attention v4", $"q ({B}, {half}, {Hq}, {D}) kv {Hkv} S {T} offset {T - half} pad",
            () =>
            {
                var qp = Tensor.Parameter((float[])prefillQ.Data.Clone(), prefillQ.Shape);
                var kp = Tensor.Parameter((float[])k.Data.Clone(), k.Shape);
                var vp = Tensor.Parameter((float[])v.Data.Clone(), v.Shape);
                var output = Op.Attention(qp, kp, vp, keyMask, T - half);
                Autograd.Backward(output, prefillDOutput);
                return [output.Data, qp.Grad!, kp.Grad!, vp.Grad!];
            },
            d =>
            {
                var (output, _, dq, dk, dv) = FlashAttentionKernels.Host.Run(d, prefillQ.Data, k.Data, v.Data, keyMask, prefillShape, prefillDOutput);
                return [output, dq, dk, dv];
            },
            ("forward", 1e-4), ("backward dq", 1e-4), ("backward dk", 1e-4), ("backward dv", 1e-4))) yield return c;

        // A decode step (T = 1, what Forward runs by v3): each row's last query over all T keys as a cache.
        int rowFloats = Hq * D;
        float[] LastQuery(float[] x) => Enumerable.Range(0, B).SelectMany(b => x.AsSpan((b * T + T - 1) * rowFloats, rowFloats).ToArray()).ToArray();
        var decodeQ = new Tensor(LastQuery(q.Data), B, 1, Hq, D);
        var decodeDOutput = LastQuery(dOutput);
        var decodeShape = AttentionKernels.Shape(B, 1, T, Hq, Hkv, D, -1, hasMask: true);
        foreach (var c in Outputs("attention", $"q ({B}, 1, {Hq}, {D}) kv {Hkv} S {T} decode",
            () =>
            {
                var qp = Tensor.Parameter((float[])decodeQ.Data.Clone(), decodeQ.Shape);
                var kp = Tensor.Parameter((float[])k.Data.Clone(), k.Shape);
                var vp = Tensor.Parameter((float[])v.Data.Clone(), v.Shape);
                var output = Op.Attention(qp, kp, vp, keyMask, T - 1);
                Autograd.Backward(output, decodeDOutput);
                return [output.Data, qp.Grad!, kp.Grad!, vp.Grad!];
            },
            d =>
            {
                var (output, dq, dk, dv) = AttentionKernels.Host.Run(d, decodeQ.Data, k.Data, v.Data, keyMask, decodeShape, decodeDOutput);
                return [output, dq, dk, dv];
            },
            ("forward", 1e-4), ("backward dq", 1e-4), ("backward dk", 1e-4), ("backward dv", 1e-4))) yield return c;
    }

    /// <summary>One case per output: the reference and the device each run once (on first use) for all of them.</summary>
    internal static IEnumerable<Case> Outputs(string kernel, string shape, Func<float[][]> reference, Func<Device, float[][]> onDevice,
        params (string What, double Tolerance)[] outputs)
    {
        var expected = new Lazy<float[][]>(reference);
        Lazy<float[][]>? actual = null;
        for (int i = 0; i < outputs.Length; i++)
        {
            int index = i;
            yield return new Case(kernel, outputs[i].What, shape, outputs[i].Tolerance, true,
                () => expected.Value[index],
                device => (actual ??= new Lazy<float[][]>(() => onDevice(device))).Value[index],
                NeedsGrad: true);
        }
    }

    /// <summary>op(x) and dx for upstream dy, on the CPU reference (Autograd).</summary>
    internal static float[][] WithGrad(Func<Tensor, Tensor> op, Tensor x, float[] dy)
    {
        var input = Tensor.Parameter((float[])x.Data.Clone(), x.Shape);
        var y = op(input);
        Autograd.Backward(y, dy);
        return [y.Data, input.Grad!];
    }

    internal static Tensor Random(Rng rng, float scale, params int[] shape) => CheckCommand.RandomTensor(rng, scale, shape);
}
