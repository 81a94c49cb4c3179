// The CUDA port of Model/KvCache.cs's two copies, one thread per float:
//   write:  cache[b, start + t, :] = new[b, t, :]                  (Append: the new keys or values)
//   gather: target[i, s, :] = source[rows[i], s, :] for s < length  (Gather: prompt rows to sample rows,
//                                                                    live rows when finished ones drop)
// A cache row is (capacity, rowWidth) floats, rowWidth = Hkv * D. Only the filled positions are copied.
// Tests: Grpo.Tests/Compute/DeviceTensorTests.cs (a cached decode on the CPU accelerator equals the CPU's),
// PtxCompileTests.cs.
using ILGPU;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

public static class CacheKernels
{
    public static void CacheWriteKernel(Index1D i, ArrayView<float> source, ArrayView<float> cache, int newTokens, int capacity, int start, int rowWidth)
    {
        int perRow = newTokens * rowWidth;
        int b = i / perRow, within = i % perRow;
        cache[((long)b * capacity + start) * rowWidth + within] = source[i];
    }

    public static void CacheGatherKernel(Index1D i, ArrayView<float> source, ArrayView<int> rows, ArrayView<float> target, int filled, long rowStride)
    {
        int r = i / filled, within = i % filled;
        target[r * rowStride + within] = source[rows[r] * rowStride + within];
    }

    /// <summary>Writes source (B, T, rowWidth) into cache (B, capacity, rowWidth) at positions [start, start + T).</summary>
    public static void Write(Device device, ArrayView<float> source, ArrayView<float> cache, int batch, int newTokens, int capacity, int start, int rowWidth)
    {
        if (source.Length != (long)batch * newTokens * rowWidth || cache.Length != (long)batch * capacity * rowWidth || start + newTokens > capacity)
            throw new ArgumentException($"cache write: {source.Length} new values, cache {cache.Length}, for ({batch}, {newTokens} at {start} of {capacity}, {rowWidth})");
        if (source.Length == 0) return;
        device.Kernels.Get("cache_write", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, int, int>(CacheWriteKernel))
            ((int)source.Length, source, cache, newTokens, capacity, start, rowWidth);
    }

    /// <summary>target row i = source row rows[i], the first length positions; rows of capacity * rowWidth floats.</summary>
    public static void Gather(Device device, ArrayView<float> source, ArrayView<int> rows, ArrayView<float> target, int length, int capacity, int rowWidth)
    {
        long rowStride = (long)capacity * rowWidth;
        if (target.Length != rows.Length * rowStride || source.Length % rowStride != 0)
            throw new ArgumentException($"cache gather: {rows.Length} rows into {target.Length} values from {source.Length}");
        int filled = length * rowWidth;
        if (filled == 0 || rows.Length == 0) return;
        device.Kernels.Get("cache_gather", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, long>(CacheGatherKernel))
            ((int)(rows.Length * filled), source, rows, target, filled, rowStride);
    }
}
