// The CUDA port of Ops/Embedding.cs, table (V, C), ids (N), y (N, C):
//   forward (one thread per output value):  y[n, c] = table[ids[n], c]
//   backward (one thread per (distinct id, c)):  dtable[v, c] += sum over n with ids[n] = v, in order of n, of dy[n, c]
// The backward is a scatter-add. Atomics would make it non-deterministic (the order of the float
// additions would change from run to run), so instead the positions are grouped by id first
// (GroupPositionsById, a stable counting sort on the host: ids come from the host's tokens), and one
// thread per (id, channel) walks its positions in increasing n: the additions happen in the CPU's
// order, so the result is the CPU's bit for bit, and the same on every run.
// Ids are checked on the host (an id outside [0, V) would read past the table on the GPU).
// Launchers take device views (a device-resident step calls them without host round trips);
// Host.* (upload, run, download) is for the tests and `grpo check`.
// Tests: Grpo.Tests/Compute/ElementKernelTests.cs, PtxCompileTests.cs; `grpo check`.
using ILGPU;
using ILGPU.Runtime;

namespace Grpo.Compute.Kernels;

/// <summary>Positions grouped by id: the positions of Ids[u] are Positions[Starts[u] .. Starts[u + 1]), increasing.</summary>
public sealed record IdGroups(int[] Ids, int[] Starts, int[] Positions);

public static class EmbeddingKernels
{
    public static void EmbeddingKernel(Index1D i, ArrayView<float> table, ArrayView<int> ids, ArrayView<float> y, int channels)
    {
        int n = i / channels, c = i % channels;
        y[i] = table[(long)ids[n] * channels + c];
    }

    public static void EmbeddingBackwardKernel(Index1D i, ArrayView<float> dy, ArrayView<int> groupIds, ArrayView<int> groupStarts,
        ArrayView<int> groupPositions, ArrayView<float> dTable, int channels)
    {
        int u = i / channels, c = i % channels;
        long at = (long)groupIds[u] * channels + c;
        float total = dTable[at];
        for (int k = groupStarts[u]; k < groupStarts[u + 1]; k++) total += dy[(long)groupPositions[k] * channels + c];
        dTable[at] = total;
    }

    /// <summary>The distinct ids and, for each, its positions in increasing order; throws on an id outside [0, vocab).</summary>
    public static IdGroups GroupPositionsById(ReadOnlySpan<int> ids, int vocab)
    {
        var counts = new int[vocab];
        for (int n = 0; n < ids.Length; n++)
        {
            if ((uint)ids[n] >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(ids), $"Embedding: id {ids[n]} is outside the table's [0, {vocab})");
            counts[ids[n]]++;
        }
        var distinct = new List<int>();
        var starts = new List<int> { 0 };
        var next = new int[vocab];   // where the next position of each id goes
        for (int v = 0; v < vocab; v++)
        {
            if (counts[v] == 0) continue;
            distinct.Add(v);
            next[v] = starts[^1];
            starts.Add(starts[^1] + counts[v]);
        }
        var positions = new int[ids.Length];
        for (int n = 0; n < ids.Length; n++) positions[next[ids[n]]++] = n;
        return new IdGroups(distinct.ToArray(), starts.ToArray(), positions);
    }

    /// <summary>y (N, C) = rows ids of table (V, C); ids already checked to lie in [0, V).</summary>
    public static void Forward(Device device, ArrayView<float> table, ArrayView<int> ids, ArrayView<float> y, int channels)
    {
        if (y.Length != ids.Length * channels || table.Length % channels != 0)
            throw new ArgumentException($"embedding: y has {y.Length} elements for {ids.Length} ids of {channels} channels");
        if (y.Length == 0) return;
        device.Kernels.Get("embedding", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int>(EmbeddingKernel))
            ((int)y.Length, table, ids, y, channels);
    }

    /// <summary>dTable += the scatter of dy (N, C) by the grouped positions (device copies of an IdGroups).</summary>
    public static void Backward(Device device, ArrayView<float> dy, ArrayView<int> groupIds, ArrayView<int> groupStarts,
        ArrayView<int> groupPositions, ArrayView<float> dTable, int channels)
    {
        if (groupStarts.Length != groupIds.Length + 1 || dy.Length != groupPositions.Length * channels)
            throw new ArgumentException($"embedding backward: {groupIds.Length} ids, {groupStarts.Length} starts, dy {dy.Length} for {groupPositions.Length} positions");
        if (groupIds.Length == 0) return;
        device.Kernels.Get("embedding_backward", acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<float>, int>(EmbeddingBackwardKernel))
            ((int)(groupIds.Length * channels), dy, groupIds, groupStarts, groupPositions, dTable, channels);
    }

    /// <summary>Host round trips (tests, `grpo check`): y and dTable = dTableStart + backward.</summary>
    public static class Host
    {
        public static (float[] Y, float[] DTable) Run(Device device, float[] table, int channels, int[] ids, float[] dy, float[] dTableStart)
        {
            var groups = GroupPositionsById(ids, table.Length / channels);
            using var deviceTable = device.UploadToPool<float>(table);
            using var deviceIds = device.UploadToPool<int>(ids);
            using var y = device.Zeros<float>((long)ids.Length * channels);
            using var deviceDy = device.UploadToPool<float>(dy);
            using var groupIds = device.UploadToPool<int>(groups.Ids);
            using var groupStarts = device.UploadToPool<int>(groups.Starts);
            using var groupPositions = device.UploadToPool<int>(groups.Positions);
            using var dTable = device.UploadToPool<float>(dTableStart);
            Forward(device, deviceTable.View, deviceIds.View, y.View, channels);
            Backward(device, deviceDy.View, groupIds.View, groupStarts.View, groupPositions.View, dTable.View, channels);
            return (Device.DownloadArray<float>(y.View), Device.DownloadArray<float>(dTable.View));
        }
    }
}
