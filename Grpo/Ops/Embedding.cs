// Embedding: a table lookup, the first layer of the transformer (model.embed_tokens).
//
//   y[n, :] = table[ids[n], :]                 table (V, C), ids (N), y (N, C)
//   dtable[v, :] = sum over n with ids[n] = v of dy[n, :]
// The backward is a scatter-add: a token that appears twice receives both rows of dy.
// Hand-worked: table [[1, 2], [3, 4], [5, 6]], ids [2, 0, 2] -> [[5, 6], [1, 2], [5, 6]];
// with dy all ones, dtable = [[1, 1], [0, 0], [2, 2]]. Tests: Grpo.Tests/Ops/OpsATests.cs.
using System.Numerics.Tensors;
using Grpo.Compute;
using Grpo.Compute.Kernels;
using ILGPU;

namespace Grpo.Ops;

public static partial class Op
{
    public static Tensor Embedding(Tensor table, int[] ids)
    {
        if (table.Rank != 2) throw new ArgumentException($"Embedding: the table must be (V, C), got {ShapeText(table)}");
        int vocab = table.Dim(0), channels = table.Dim(1);
        foreach (int id in ids)
            if ((uint)id >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(ids), $"Embedding: id {id} is outside the table's [0, {vocab})");

        if (OnGpu("Embedding", table)) return EmbeddingOnDevice(table, ids, vocab, channels);
        ids = (int[])ids.Clone(); // the backward reads them later; the caller may reuse its array
        var y = Tensor.Zeros(ids.Length, channels); // (N, C)
        for (int n = 0; n < ids.Length; n++)
            table.Data.AsSpan(ids[n] * channels, channels).CopyTo(y.Data.AsSpan(n * channels, channels));

        Autograd.Record(y, [table], () =>
        {
            var dy = y.Grad!;
            var dtable = table.GradOrCreate();
            // Sequential on purpose: two positions with the same id write the same row.
            for (int n = 0; n < ids.Length; n++)
            {
                var row = dtable.AsSpan(ids[n] * channels, channels);
                TensorPrimitives.Add(row, dy.AsSpan(n * channels, channels), row);
            }
        });
        return y;
    }

    /// <summary>The GPU path: a gather, and for the backward the positions grouped by id so that one
    /// thread sums each used row (no two threads add into the same row: deterministic, no atomics).</summary>
    private static Tensor EmbeddingOnDevice(Tensor table, int[] ids, int vocab, int channels)
    {
        var device = table.Device;
        var y = Tensor.Empty(device, [ids.Length, channels]);
        EmbeddingKernels.Forward(device, table.View, device.Indices(ids), y.View, channels);
        var groups = EmbeddingKernels.GroupPositionsById(ids, vocab);
        Autograd.Record(y, [table], () =>
        {
            using var groupIds = device.UploadToPool<int>(groups.Ids);
            using var groupStarts = device.UploadToPool<int>(groups.Starts);
            using var groupPositions = device.UploadToPool<int>(groups.Positions);
            EmbeddingKernels.Backward(device, y.GradView(), groupIds.View, groupStarts.View, groupPositions.View, table.GradView(), channels);
        });
        return y;
    }
}
