// The CUDA port of Sampling/Sampler.cs's row operations, rows (N, V) of logits, one row per sequence:
//   greedy:       token = argmax_i logits_i, ties to the lowest index         (one RowGroup per row)
//   temperature:  p_i = e^((logits_i - max) / T) / sum_j e^((logits_j - max) / T)  (one RowGroup per row)
//   min-p:        p_i = 0 where p_i < minP * max_j p_j, then renormalised     (one RowGroup per row)
//   draw:         the first token whose cumulative probability exceeds the row's coin (inverse CDF),
//                 walking the row in order with a float sum as the CPU does, so the same probabilities
//                 and coin give the same token.
//                 v1 DrawKernel: one thread per row; its loads are serial and uncoalesced: 3.9 ms a
//                 step for 64 rows of 32,000 (the mid shape), more than the whole model's forward.
//                 v2 DrawWarpKernel: a warp per row; the lanes load 32 consecutive probabilities at
//                 once and every lane then adds them in index order (each lane's value broadcast by
//                 a shuffle), so the sum is the same float sum as v1's and the CPU's, in the same
//                 order; the warp stops after the 32 that hold the token. First written with a
//                 shuffle and two branches per value: 2.05 ms a step at the mid shape (each value
//                 waited for its shuffle); now eight shuffles are issued before eight branch-free
//                 steps of the sum. Measured on the H200, mid shape: sampling 10.7k -> 13.6k new
//                 tokens/s (the draw was 3.9 ms a step by v1, 2.05 ms by the first v2).
// Not ported: top-k and top-p, which need the row sorted by probability (a segmented sort per row);
// for them the caller downloads the probabilities and uses Sampler's CPU filters. The log-prob GRPO
// records for a drawn token is TokenLogProbKernels' forward (temperature 1, no filters).
// Launchers take device views (a device-resident decoder keeps logits on the device and brings back
// only the N tokens); Host.* (upload, run, download) is for the tests and `grpo check`.
// Tests: Grpo.Tests/Compute/TrainingKernelTests.cs, PtxCompileTests.cs; `grpo check`.
using Grpo.Sampling;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static class SamplerKernels
{
    public static void ArgMaxKernel(ArrayView<float> logits, ArrayView<int> tokens, int vocab)
    {
        var values = SharedMemory.Allocate<float>(RowGroup.Threads);
        var indices = SharedMemory.Allocate<int>(RowGroup.Threads);
        long start = (long)Grid.IdxX * vocab;
        float best = float.NegativeInfinity;
        int bestIndex = vocab;   // past the row: a thread with no column loses every tie
        for (int j = Group.IdxX; j < vocab; j += RowGroup.Threads)
        {
            float value = logits[start + j];
            if (bestIndex == vocab || value > best) { best = value; bestIndex = j; }
        }
        int token = RowGroup.ArgMax(values, indices, best, bestIndex);
        if (Group.IdxX == 0) tokens[Grid.IdxX] = token;
    }

    public static void TemperatureSoftmaxKernel(ArrayView<float> logits, ArrayView<float> probabilities, int vocab, float inverseTemperature)
    {
        var scratch = SharedMemory.Allocate<float>(RowGroup.Threads);
        long start = (long)Grid.IdxX * vocab;
        float max = float.NegativeInfinity;
        for (int j = Group.IdxX; j < vocab; j += RowGroup.Threads) max = XMath.Max(max, logits[start + j]);
        max = RowGroup.Max(scratch, max);
        float partial = 0f;
        for (int j = Group.IdxX; j < vocab; j += RowGroup.Threads)
        {
            float e = XMath.Exp((logits[start + j] - max) * inverseTemperature);
            probabilities[start + j] = e;
            partial += e;
        }
        float inverse = 1f / RowGroup.Sum(scratch, partial);
        for (int j = Group.IdxX; j < vocab; j += RowGroup.Threads) probabilities[start + j] *= inverse;
    }

    public static void MinPKernel(ArrayView<float> probabilities, int vocab, float minP)
    {
        var scratch = SharedMemory.Allocate<float>(RowGroup.Threads);
        long start = (long)Grid.IdxX * vocab;
        float max = 0f;
        for (int j = Group.IdxX; j < vocab; j += RowGroup.Threads) max = XMath.Max(max, probabilities[start + j]);
        float threshold = minP * RowGroup.Max(scratch, max);
        float partial = 0f;
        for (int j = Group.IdxX; j < vocab; j += RowGroup.Threads)
        {
            float p = probabilities[start + j];
            if (p < threshold) { p = 0f; probabilities[start + j] = 0f; }
            partial += p;
        }
        float inverse = 1f / RowGroup.Sum(scratch, partial);
        for (int j = Group.IdxX; j < vocab; j += RowGroup.Threads) probabilities[start + j] *= inverse;
    }

    public static void DrawKernel(Index1D row, ArrayView<float> probabilities, ArrayView<float> coins, ArrayView<int> tokens, int vocab)
    {
        long start = (long)(int)row * vocab;
        float coin = coins[row], cumulative = 0f;
        int lastPossible = 0, token = -1;
        for (int i = 0; i < vocab && token < 0; i++)
        {
            float p = probabilities[start + i];
            if (p <= 0f) continue;
            cumulative += p;
            lastPossible = i;
            if (coin < cumulative) token = i;
        }
        tokens[row] = token < 0 ? lastPossible : token;
    }

    /// <summary>v2: a warp per row (Grid.IdxX), the row read 32 at a time, summed in index order by every lane.</summary>
    public static void DrawWarpKernel(ArrayView<float> probabilities, ArrayView<float> coins, ArrayView<int> tokens, int vocab)
    {
        int row = Grid.IdxX, lane = Warp.LaneIdx;
        long start = (long)row * vocab;
        var walk = new DrawWalk { Coin = coins[row], Token = -1 };
        for (int chunk = 0; chunk < vocab && walk.Token < 0; chunk += Warp.WarpSize)
        {
            float mine = chunk + lane < vocab ? probabilities[start + chunk + lane] : 0f;
            // Eight shuffles in flight, then eight steps of the sum: one shuffle's latency per eight values.
            for (int j = 0; j < Warp.WarpSize; j += 8)
            {
                float p0 = Warp.Shuffle(mine, j), p1 = Warp.Shuffle(mine, j + 1), p2 = Warp.Shuffle(mine, j + 2), p3 = Warp.Shuffle(mine, j + 3);
                float p4 = Warp.Shuffle(mine, j + 4), p5 = Warp.Shuffle(mine, j + 5), p6 = Warp.Shuffle(mine, j + 6), p7 = Warp.Shuffle(mine, j + 7);
                int at = chunk + j;
                walk = walk.Step(p0, at).Step(p1, at + 1).Step(p2, at + 2).Step(p3, at + 3)
                           .Step(p4, at + 4).Step(p5, at + 5).Step(p6, at + 6).Step(p7, at + 7);
            }
        }
        if (lane == 0) tokens[row] = walk.Token < 0 ? walk.LastPossible : walk.Token;
    }

    /// <summary>
    /// The inverse-CDF walk of v1 and Sampler.Draw, one value at a time, without branches: a value that
    /// is not positive is skipped (adding it would change nothing but -0 or NaN, so it is not added), and
    /// after the token is found the walk only carries it.
    /// </summary>
    private struct DrawWalk
    {
        public float Coin, Cumulative;
        public int Token, LastPossible;

        public readonly DrawWalk Step(float p, int index)
        {
            bool counts = !(p <= 0f) && Token < 0;
            float cumulative = counts ? Cumulative + p : Cumulative;
            return new DrawWalk
            {
                Coin = Coin, Cumulative = cumulative,
                LastPossible = counts ? index : LastPossible,
                Token = counts && Coin < cumulative ? index : Token,
            };
        }
    }

    /// <summary>tokens (rows) = argmax of each row of logits (rows, vocab).</summary>
    public static void ArgMax(Device device, ArrayView<float> logits, ArrayView<int> tokens, int rows, int vocab)
    {
        Check(logits, tokens, rows, vocab);
        if (rows == 0) return;
        device.Kernels.Get("argmax", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, int>(ArgMaxKernel))(RowGroup.Config(rows), logits, tokens, vocab);
    }

    /// <summary>probabilities (rows, vocab) = softmax(logits / temperature) per row, then min-p when minP > 0.</summary>
    public static void Probabilities(Device device, ArrayView<float> logits, ArrayView<float> probabilities, int rows, int vocab, float temperature, float minP)
    {
        SoftmaxKernels.CheckRows(logits, probabilities, rows, vocab);
        if (!(temperature > 0f)) throw new ArgumentOutOfRangeException(nameof(temperature), "sampler kernels: temperature must be > 0 (greedy is ArgMax)");
        if (rows == 0) return;
        device.Kernels.Get("temperature_softmax", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, float>(TemperatureSoftmaxKernel))
            (RowGroup.Config(rows), logits, probabilities, vocab, 1f / temperature);
        if (minP > 0f)
            device.Kernels.Get("min_p", acc => acc.LoadStreamKernel<ArrayView<float>, int, float>(MinPKernel))(RowGroup.Config(rows), probabilities, vocab, minP);
    }

    /// <summary>tokens (rows) drawn from probabilities (rows, vocab) by one coin in [0, 1) per row.</summary>
    public static void Draw(Device device, ArrayView<float> probabilities, ArrayView<float> coins, ArrayView<int> tokens, int rows, int vocab)
    {
        Check(probabilities, tokens, rows, vocab);
        if (coins.Length != rows) throw new ArgumentException($"sampler: {coins.Length} coins for {rows} rows");
        if (rows == 0) return;
        device.Kernels.Get("draw", acc => acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, int>(DrawWarpKernel))
            (new KernelConfig(rows, device.Accelerator.WarpSize), probabilities, coins, tokens, vocab);
    }

    /// <summary>Draw by v1 (a thread per row): the bench's comparison, and the tests' check that v2 draws the same.</summary>
    public static void DrawV1(Device device, ArrayView<float> probabilities, ArrayView<float> coins, ArrayView<int> tokens, int rows, int vocab)
    {
        Check(probabilities, tokens, rows, vocab);
        if (coins.Length != rows) throw new ArgumentException($"sampler: {coins.Length} coins for {rows} rows");
        if (rows == 0) return;
        device.Kernels.Get("draw_v1", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int>(DrawKernel))
            (rows, probabilities, coins, tokens, vocab);
    }

    private static void Check(ArrayView<float> rowsView, ArrayView<int> tokens, int rows, int vocab)
    {
        if (rowsView.Length != (long)rows * vocab || tokens.Length != rows)
            throw new ArgumentException($"sampler: {rowsView.Length} values and {tokens.Length} tokens for ({rows}, {vocab})");
    }

    /// <summary>Host round trips (tests, `grpo check`).</summary>
    public static class Host
    {
        /// <summary>One token per row of logits (rows, vocab) under options (top-k / top-p not supported), with one coin per row.</summary>
        public static int[] Sample(Device device, float[] logits, int vocab, SamplerOptions options, float[] coins)
        {
            options.Validate();
            if (options.TopK > 0 && options.TopK < vocab || options.TopP < 1f)
                throw new NotSupportedException("sampler kernels: top-k and top-p are not ported (they need a sort per row); use Sampler on the host");
            int rows = logits.Length / vocab;
            using var deviceLogits = device.UploadToPool<float>(logits);
            using var tokens = device.Zeros<int>(rows);
            if (options.IsGreedy) ArgMax(device, deviceLogits.View, tokens.View, rows, vocab);
            else
            {
                using var probabilities = device.Zeros<float>(logits.Length);
                using var deviceCoins = device.UploadToPool<float>(coins);
                Probabilities(device, deviceLogits.View, probabilities.View, rows, vocab, options.Temperature, options.MinP);
                Draw(device, probabilities.View, deviceCoins.View, tokens.View, rows, vocab);
            }
            return Device.DownloadArray<int>(tokens.View);
        }

        /// <summary>The probabilities Sample draws from (rows, vocab), temperature > 0.</summary>
        public static float[] ProbabilitiesOf(Device device, float[] logits, int vocab, float temperature, float minP)
        {
            int rows = logits.Length / vocab;
            using var deviceLogits = device.UploadToPool<float>(logits);
            using var probabilities = device.Zeros<float>(logits.Length);
            SamplerKernels.Probabilities(device, deviceLogits.View, probabilities.View, rows, vocab, temperature, minP);
            return Device.DownloadArray<float>(probabilities.View);
        }
    }
}
