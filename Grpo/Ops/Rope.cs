// RoPE, rotary position embedding (Su et al. 2021), in Hugging Face Llama's "rotate_half" layout:
// channel i of a head is paired with channel i + D/2 (not with i + 1, as in the paper and Meta's code).
//
//   angle_i = p * inv_freq_i, inv_freq_i = theta^(-2i/D), for i < D/2, p the token's position
//   y[i]       = x[i] * cos - x[i + D/2] * sin
//   y[i + D/2] = x[i + D/2] * cos + x[i] * sin
// Each pair is rotated by +angle; the backward rotates dy by -angle (a rotation's transpose is its inverse):
//   dx[i] = dy[i] * cos + dy[i + D/2] * sin      dx[i + D/2] = dy[i + D/2] * cos - dy[i] * sin
// Shapes: x (B, T, H, D), positions (B*T), one per token (row b*T + t); y has x's shape.
// inv_freq, the angle and cos/sin are rounded through float32 where transformers rounds them, so the
// same positions give the same rotation. Hand-worked: at position 0 every angle is 0 and RoPE is the
// identity; D = 2, theta any, position 1: angle 1 rad, [1, 0] -> [cos 1, sin 1] = [0.5403, 0.8415].
// Tests: Grpo.Tests/Ops/OpsATests.cs.
using Grpo.Compute;
using Grpo.Compute.Kernels;
using ILGPU;
namespace Grpo.Ops;

public static partial class Op
{
    public static Tensor Rope(Tensor x, int[] positions, float theta)
    {
        if (x.Rank != 4) throw new ArgumentException($"Rope: x must be (B, T, H, D), got {ShapeText(x)}");
        int rows = x.Dim(0) * x.Dim(1), heads = x.Dim(2), headDim = x.Dim(3);
        if (headDim % 2 != 0) throw new ArgumentException($"Rope: the head dimension must be even, x is {ShapeText(x)}");
        if (positions.Length != rows)
            throw new ArgumentException($"Rope: {positions.Length} positions for {rows} tokens (B*T) of x {ShapeText(x)}");
        int maxPosition = 0;
        foreach (int p in positions)
        {
            if (p < 0) throw new ArgumentOutOfRangeException(nameof(positions), $"Rope: position {p} is negative");
            maxPosition = Math.Max(maxPosition, p);
        }
        positions = (int[])positions.Clone(); // the backward reads them later; the caller may reuse its array
        var table = RopeTableFor(theta, headDim, maxPosition);
        if (OnGpu("Rope", x)) return RopeOnDevice(x, positions, table, rows, heads, headDim);

        var y = new Tensor(new float[x.Size], x.Shape);
        ForBlocks(rows, heads * headDim, row => RotateRow(x.Data, y.Data, row, positions[row], heads, headDim, table, sign: 1f, accumulate: false));

        Autograd.Record(y, [x], () =>
        {
            var dy = y.Grad!;
            var dx = x.GradOrCreate();
            ForBlocks(rows, heads * headDim, row => RotateRow(dy, dx, row, positions[row], heads, headDim, table, sign: -1f, accumulate: true));
        });
        return y;
    }

    /// <summary>Rotates every head of one token by sign * angle, writing (or adding) into output.</summary>
    private static void RotateRow(float[] input, float[] output, int row, int position, int heads, int headDim,
        RopeTable table, float sign, bool accumulate)
    {
        int half = headDim / 2;
        var cos = table.Cos.AsSpan(position * half, half);
        var sin = table.Sin.AsSpan(position * half, half);
        for (int h = 0; h < heads; h++)
        {
            int start = (row * heads + h) * headDim;
            for (int i = 0; i < half; i++)
            {
                float first = input[start + i], second = input[start + i + half];
                float s = sign * sin[i];
                float rotatedFirst = first * cos[i] - second * s;
                float rotatedSecond = second * cos[i] + first * s;
                if (accumulate) { output[start + i] += rotatedFirst; output[start + i + half] += rotatedSecond; }
                else { output[start + i] = rotatedFirst; output[start + i + half] = rotatedSecond; }
            }
        }
    }

    /// <summary>cos and sin of angle(p, i) for p in [0, Positions), stored [p * D/2 + i]. Immutable once built.</summary>
    private sealed record RopeTable(float Theta, int HeadDim, int Positions, float[] Cos, float[] Sin);

    // One table is kept between calls: it depends only on (theta, D) and grows with the longest position
    // seen, so a training step does not recompute B*T*D/2 cosines in every layer. Replacing the reference
    // is atomic and a table never changes after it is published, so threads may share it.
    private static RopeTable? ropeTableCache;

    /// <summary>cos and sin of p * theta^(-2i/D) for p &lt; positions, i &lt; D/2, stored [p * D/2 + i], rounded to
    /// float32 at the steps transformers rounds them (the CUDA kernels read the same table).</summary>
    internal static (float[] Cos, float[] Sin) CosSinTable(float theta, int headDim, int positions)
    {
        int half = headDim / 2;
        var inverseFrequencies = new float[half];
        for (int i = 0; i < half; i++)
        {
            float exponent = (float)(2 * i) / headDim;
            inverseFrequencies[i] = 1f / (float)Math.Pow(theta, exponent);
        }
        var cos = new float[(long)positions * half];
        var sin = new float[(long)positions * half];
        for (int p = 0; p < positions; p++)
            for (int i = 0; i < half; i++)
            {
                float angle = p * inverseFrequencies[i];
                cos[p * half + i] = (float)Math.Cos(angle);
                sin[p * half + i] = (float)Math.Sin(angle);
            }
        return (cos, sin);
    }

    private static RopeTable RopeTableFor(float theta, int headDim, int maxPosition)
    {
        var cached = ropeTableCache;
        bool sameFrequencies = cached != null && cached.Theta == theta && cached.HeadDim == headDim;
        if (sameFrequencies && cached!.Positions > maxPosition) return cached;

        int positions = Math.Max(maxPosition + 1, sameFrequencies ? 2 * cached!.Positions : 64);
        var (cos, sin) = CosSinTable(theta, headDim, positions);
        var table = new RopeTable(theta, headDim, positions, cos, sin);
        ropeTableCache = table;
        return table;
    }

    /// <summary>The GPU path: the same table (uploaded once per device and size), one thread per pair.</summary>
    private static Tensor RopeOnDevice(Tensor x, int[] positions, RopeTable table, int rows, int heads, int headDim)
    {
        var device = x.Device;
        var (cos, sin) = DeviceRopeTable(device, table);
        var y = Tensor.Empty(device, x.Shape);
        RopeKernels.Rotate(device, x.View, y.View, device.Indices(positions), cos.View, sin.View, rows, heads, headDim, 1f, accumulate: false);
        Autograd.Record(y, [x], () =>
        {
            RopeKernels.Rotate(device, y.GradView(), x.GradView(), device.Indices(positions), cos.View, sin.View, rows, heads, headDim, -1f, accumulate: true);
        });
        return y;
    }

    /// <summary>The device table this op rotates by, covering positions 0 .. maxPosition (the fused decode step reads the same numbers).</summary>
    internal static (ArrayView<float> Cos, ArrayView<float> Sin) RopeTableOnDevice(Device device, float theta, int headDim, int maxPosition)
    {
        var (cos, sin) = DeviceRopeTable(device, RopeTableFor(theta, headDim, maxPosition));
        return (cos.View, sin.View);
    }

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Device, Tuple<RopeTable, DeviceArray, DeviceArray>> deviceRopeTables = new();

    private static (DeviceArray Cos, DeviceArray Sin) DeviceRopeTable(Device device, RopeTable table)
    {
        lock (deviceRopeTables)
        {
            if (deviceRopeTables.TryGetValue(device, out var cached) && ReferenceEquals(cached.Item1, table)) return (cached.Item2, cached.Item3);
            var entry = Tuple.Create(table, DeviceArray.Upload(device, table.Cos, scoped: false), DeviceArray.Upload(device, table.Sin, scoped: false));
            deviceRopeTables.AddOrUpdate(device, entry);
            return (entry.Item2, entry.Item3);
        }
    }
}
