// Entropy of each row's softmax, for logits (..., V):
//
//   H = -sum_v p_v log p_v = logsumexp(x) - sum_v p_v x_v,   p = softmax(x)
//
// A health signal GRPO logs (RL lowers it as the policy sharpens), not a term of any loss here, so
// it records no backward. The CPU reference works in double per row; on a GPU the rows stay there
// (softmax, p * x summed per row, log-sum-exp: one pass each over the logits) and only one value a
// row comes back, not the logits (a Qwen2 vocabulary is 151,936 columns).
// Hand-worked: logits [0, 0] give p = [1/2, 1/2] and H = ln 2; [0, ln 3] give p = [1/4, 3/4] and
// H = ln 4 - (3/4) ln 3 = 0.5623. Tests: Grpo.Tests/Ops/OpsBTests.cs, Grpo.Tests/Compute/DeviceTensorTests.cs.
using Grpo.Compute;
using Grpo.Compute.Kernels;

namespace Grpo.Ops;

public static partial class Op
{
    /// <summary>The entropy of softmax over the last axis, one value per row (logits' shape without its last
    /// axis). Rows where rowMask is 0 may be left 0 (the CPU skips them).</summary>
    public static Tensor RowEntropy(Tensor logits, float[]? rowMask = null)
    {
        int vocab = SoftmaxRows.Width(logits, "RowEntropy"), rows = vocab == 0 ? 0 : logits.Size / vocab;
        if (rowMask != null && rowMask.Length != rows) throw new ArgumentException($"RowEntropy: {rowMask.Length} mask entries for {rows} rows");
        if (OnGpu("RowEntropy", logits)) return RowEntropyOnDevice(logits, rows, vocab);
        var entropy = new Tensor(new float[rows], logits.Shape[..^1]);
        var row = new double[vocab];
        for (int r = 0; r < rows; r++)
        {
            if (rowMask != null && rowMask[r] == 0) continue;
            var x = logits.Data.AsSpan(r * vocab, vocab);
            double max = double.NegativeInfinity;
            foreach (var value in x) max = Math.Max(max, value);
            double sum = 0;
            for (int v = 0; v < vocab; v++) { row[v] = Math.Exp(x[v] - max); sum += row[v]; }
            double h = 0;
            for (int v = 0; v < vocab; v++) { double p = row[v] / sum; if (p > 0) h -= p * Math.Log(p); }
            entropy.Data[r] = (float)h;
        }
        return entropy;
    }

    private static Tensor RowEntropyOnDevice(Tensor logits, int rows, int vocab)
    {
        var device = logits.Device;
        using var p = device.Pool.Rent<float>(logits.Size);
        using var weightedSum = device.Pool.Rent<float>(rows);
        using var logSumExps = device.Pool.Rent<float>(rows);
        using var unused = device.Pool.Rent<float>(rows);
        SoftmaxKernels.Forward(device, logits.View, p.View, rows, vocab, log: false);
        ElementwiseKernels.Mul(device, p.View, logits.View, p.View);                        // p_v x_v
        ReduceKernels.Forward(device, p.View, weightedSum.View, rows, vocab, 1, 1f);         // sum_v p_v x_v
        TokenLogProbKernels.Forward(device, logits.View, device.Indices(new int[rows]), logSumExps.View, unused.View, rows, vocab);
        var lse = Device.DownloadArray<float>(logSumExps.View);
        var sum = Device.DownloadArray<float>(weightedSum.View);
        var entropy = new float[rows];
        for (int r = 0; r < rows; r++) entropy[r] = lse[r] - sum[r];
        return new Tensor(entropy, logits.Shape[..^1]);
    }
}
