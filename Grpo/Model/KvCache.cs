// The key/value cache for incremental decoding: each layer's rotated keys and values of every token
// seen so far, so a new token attends to them without recomputing the prefix.
//
// Per layer: keys and values (B, capacity, Hkv, D); one key mask (B * capacity), false at padding.
// Length is how many positions of every row are filled. A cached forward of T new tokens writes
// their keys/values at [Length, Length + T) and attends over the whole buffer with
// queryOffset = Length: query t may read keys s <= Length + t only, so the unfilled tail is never
// read and no copy of the prefix is needed.
// Memory: 2 * layers * B * capacity * Hkv * D floats (Tiny, B 4, capacity 64: 8 KB per layer side).
// Gather makes a cache of chosen rows (a row may be taken several times): the generator prefills each
// prompt once and gathers its row G times, and drops finished rows so decoding stops computing them.
// On a GPU the buffers are device arrays and the copies are kernels (Compute/Kernels/CacheKernels.cs);
// the key mask stays on the host (the attention op uploads it; the fused decode step uploads
// KeyMaskValues once a step).
// Tests: Grpo.Tests/Model/TransformerTests.cs (cached logits equal the full forward's, position by
// position; a gathered cache decodes as the original rows would), Grpo.Tests/Compute/DeviceTensorTests.cs.
using Grpo.Compute;
using Grpo.Compute.Kernels;
using ILGPU;

namespace Grpo.Model;

public sealed class KvCache
{
    private readonly float[][] keys, values;   // per layer, (B, capacity, Hkv, D), on the host
    private readonly DeviceArray[] deviceKeys, deviceValues;   // the same on a GPU
    private readonly TransformerConfig config;
    private readonly int kvHeads, headDim;

    public int Batch { get; }
    public int Capacity { get; }
    public int Length { get; private set; }

    /// <summary>(B * capacity): false where a cached position is padding.</summary>
    public bool[] KeyMask { get; }

    public Device Device { get; }

    public KvCache(TransformerConfig config, int batch, int capacity) : this(config, batch, capacity, Device.Cpu) { }

    public KvCache(TransformerConfig config, int batch, int capacity, Device device)
    {
        if (batch <= 0 || capacity <= 0) throw new ArgumentException($"batch ({batch}) and capacity ({capacity}) must be positive");
        this.config = config;
        Batch = batch;
        Capacity = capacity;
        kvHeads = config.KvHeads;
        headDim = config.HeadDim;
        long perLayer = (long)batch * capacity * kvHeads * headDim;
        if (perLayer > Array.MaxLength) throw new ArgumentException($"a cache of {perLayer} floats per layer is too large for one array");
        Device = device;
        keys = device.IsCpu ? new float[config.Layers][] : [];
        values = device.IsCpu ? new float[config.Layers][] : [];
        deviceKeys = device.IsCpu ? [] : new DeviceArray[config.Layers];
        deviceValues = device.IsCpu ? [] : new DeviceArray[config.Layers];
        for (int l = 0; l < config.Layers; l++)
        {
            if (device.IsCpu)
            {
                keys[l] = new float[perLayer];
                values[l] = new float[perLayer];
            }
            else
            {
                deviceKeys[l] = new DeviceArray(device, perLayer, zero: true, scoped: false);
                deviceValues[l] = new DeviceArray(device, perLayer, zero: true, scoped: false);
            }
        }
        KeyMask = new bool[batch * capacity];
    }

    /// <summary>
    /// A new cache of sourceRows.Count rows, same capacity and length, whose row i holds a copy of this
    /// cache's row sourceRows[i]: its filled positions and their key mask (the unfilled tail is not copied).
    /// </summary>
    public KvCache Gather(IReadOnlyList<int> sourceRows)
    {
        var gathered = new KvCache(config, sourceRows.Count, Capacity, Device) { Length = Length };
        int rowWidth = kvHeads * headDim, filled = Length * rowWidth;
        foreach (int row in sourceRows)
            if ((uint)row >= (uint)Batch) throw new ArgumentOutOfRangeException(nameof(sourceRows), row, $"row outside the cache's batch of {Batch}");
        if (!Device.IsCpu)
        {
            using var rows = Device.UploadToPool<int>(sourceRows.ToArray());
            for (int l = 0; l < deviceKeys.Length; l++)
            {
                CacheKernels.Gather(Device, deviceKeys[l].View, rows.View, gathered.deviceKeys[l].View, Length, Capacity, rowWidth);
                CacheKernels.Gather(Device, deviceValues[l].View, rows.View, gathered.deviceValues[l].View, Length, Capacity, rowWidth);
            }
        }
        for (int i = 0; i < sourceRows.Count; i++)
        {
            int row = sourceRows[i];
            for (int l = 0; l < keys.Length; l++)
            {
                Array.Copy(keys[l], (long)row * Capacity * rowWidth, gathered.keys[l], (long)i * Capacity * rowWidth, filled);
                Array.Copy(values[l], (long)row * Capacity * rowWidth, gathered.values[l], (long)i * Capacity * rowWidth, filled);
            }
            Array.Copy(KeyMask, row * Capacity, gathered.KeyMask, i * Capacity, Length);
        }
        return gathered;
    }

    /// <summary>Gives a GPU cache's memory back now (the cache must not be used after).</summary>
    public void Release()
    {
        foreach (var array in deviceKeys.Concat(deviceValues)) array.Release();
    }

    /// <summary>Forgets every cached position (the buffers are reused).</summary>
    public void Reset() => Length = 0;

    internal void CheckFits(TransformerConfig config, int batch, int newTokens)
    {
        if (config.Layers != Math.Max(keys.Length, deviceKeys.Length) || config.KvHeads != kvHeads || config.HeadDim != headDim)
            throw new ArgumentException("this cache was made for a model of another shape");
        if (batch != Batch) throw new ArgumentException($"cache holds batch {Batch}, forward got {batch}");
        if (Length + newTokens > Capacity)
            throw new InvalidOperationException($"KV cache full: {Length} cached + {newTokens} new > capacity {Capacity}");
    }

    internal void WriteKeyMask(bool[]? newMask, int newTokens)
    {
        for (int b = 0; b < Batch; b++)
            for (int t = 0; t < newTokens; t++)
                KeyMask[b * Capacity + Length + t] = newMask?[b * newTokens + t] ?? true;
    }

    /// <summary>Writes the new k, v (B, T, Hkv, D) after the cached prefix; returns tensors over the whole buffers.</summary>
    internal (Tensor Keys, Tensor Values) Append(int layer, Tensor k, Tensor v)
    {
        int T = k.Dim(1), rowWidth = kvHeads * headDim;
        if (!Device.IsCpu)
        {
            CacheKernels.Write(Device, k.View, deviceKeys[layer].View, Batch, T, Capacity, Length, rowWidth);
            CacheKernels.Write(Device, v.View, deviceValues[layer].View, Batch, T, Capacity, Length, rowWidth);
            return (new Tensor(deviceKeys[layer], Batch, Capacity, kvHeads, headDim), new Tensor(deviceValues[layer], Batch, Capacity, kvHeads, headDim));
        }
        for (int b = 0; b < Batch; b++)
        {
            int source = b * T * rowWidth, target = (b * Capacity + Length) * rowWidth;
            Array.Copy(k.Data, source, keys[layer], target, T * rowWidth);
            Array.Copy(v.Data, source, values[layer], target, T * rowWidth);
        }
        return (new Tensor(keys[layer], Batch, Capacity, kvHeads, headDim), new Tensor(values[layer], Batch, Capacity, kvHeads, headDim));
    }

    internal void Advance(int newTokens) => Length += newTokens;

    /// <summary>A GPU cache's keys and values of one layer, (B, capacity, Hkv, D) (the fused decode step writes and reads them).</summary>
    internal (ArrayView<float> Keys, ArrayView<float> Values) DeviceBuffers(int layer) => (deviceKeys[layer].View, deviceValues[layer].View);

    private int[]? keyMaskValues;

    /// <summary>KeyMask as 0/1 ints (B * capacity), for one upload a step; the array is reused by the next call.</summary>
    internal int[] KeyMaskValues()
    {
        keyMaskValues ??= new int[KeyMask.Length];
        for (int i = 0; i < KeyMask.Length; i++) keyMaskValues[i] = KeyMask[i] ? 1 : 0;
        return keyMaskValues;
    }
}
