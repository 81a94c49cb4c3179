// Device copies of the small integer arrays the ops read (token ids, positions, key masks, targets),
// kept for reuse: a model's forward hands the same positions to every layer's RoPE and the same mask
// to every layer's attention, and a copy from host memory waits for the device to finish what it has
// queued, so one copy per array rather than one per layer keeps the GPU fed (a decode step went from
// about a dozen such waits to three).
// Lookup is by content, not by reference (callers reuse and refill their arrays between steps), over
// the few most recent arrays; the oldest goes back to the pool when a new one comes. Views handed out
// stay valid until evicted, which only a later upload does: kernels already queued that read an
// evicted copy still run first (one stream, in order).
// Tests: Grpo.Tests/Compute/DeviceTensorTests.cs.
using ILGPU;

namespace Grpo.Compute;

public sealed partial class Device
{
    private const int IndexCopies = 8;
    private readonly List<(int[] Values, PooledBuffer<int> Buffer)> indexCopies = new();

    /// <summary>A device copy of values (shared with earlier calls of the same content); do not dispose or write it.</summary>
    public ArrayView<int> Indices(ReadOnlySpan<int> values)
    {
        lock (indexCopies)
        {
            for (int i = indexCopies.Count - 1; i >= 0; i--)
                if (indexCopies[i].Values.AsSpan().SequenceEqual(values))
                    return indexCopies[i].Buffer.View.SubView(0, values.Length);
            if (indexCopies.Count == IndexCopies)
            {
                indexCopies[0].Buffer.Dispose();
                indexCopies.RemoveAt(0);
            }
            var buffer = Pool.Rent<int>(Math.Max(1, values.Length));
            if (values.Length > 0) buffer.Upload(values);
            indexCopies.Add((values.ToArray(), buffer));
            return buffer.View.SubView(0, values.Length);
        }
    }
}
