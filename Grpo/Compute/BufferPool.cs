// BufferPool: device buffers reused by size, because every ILGPU allocation is a cudaMalloc (and
// every release a cudaFree, which synchronizes the device): far too slow once per op.
//
// Sizes are rounded up to a power of two (in elements), so a buffer for 1000 floats serves any later
// request of 513 to 1024; the waste is under 2x and the number of distinct sizes stays small when
// sequence lengths vary. A rented buffer is handed out as a view of exactly the length asked for.
// Renting and returning take a lock (cheap next to a kernel launch). Memory goes back to the device
// only on Trim() or Dispose().
// Tests: Grpo.Tests/Compute/BufferPoolTests.cs.
using ILGPU;
using ILGPU.Runtime;

namespace Grpo.Compute;

public sealed class BufferPool(Accelerator accelerator) : IDisposable
{
    private readonly Dictionary<(Type, long), Stack<MemoryBuffer>> free = new();
    private readonly object gate = new();
    // Rented buffers stay referenced from here: a tensor dropped unreferenced gives its buffer back in
    // its finalizer, and without this reference ILGPU's own finalizer of the same (unreachable) buffer
    // could free the device memory first, leaving freed memory in the pool for the next renter.
    private readonly HashSet<MemoryBuffer> rented = new(ReferenceEqualityComparer.Instance);

    /// <summary>Bytes allocated on the device by this pool, rented or free.</summary>
    public long BytesAllocated { get; private set; }
    /// <summary>Bytes in buffers now rented out.</summary>
    public long BytesRented { get; private set; }
    /// <summary>How many device allocations the pool has made (the count a pool keeps low).</summary>
    public int Allocations { get; private set; }

    /// <summary>A buffer of at least length elements (contents undefined); dispose it to give it back.</summary>
    public PooledBuffer<T> Rent<T>(long length) where T : unmanaged
    {
        long capacity = length <= 1 ? 1 : (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)length);
        var key = (typeof(T), capacity);
        MemoryBuffer1D<T, Stride1D.Dense>? buffer = null;
        lock (gate)
        {
            if (free.TryGetValue(key, out var stack) && stack.Count > 0)
                buffer = (MemoryBuffer1D<T, Stride1D.Dense>)stack.Pop();
            else
            {
                Allocations++;
                BytesAllocated += capacity * Interop.SizeOf<T>();
            }
            BytesRented += capacity * Interop.SizeOf<T>();
        }
        buffer ??= Allocate<T>(capacity);
        lock (gate) rented.Add(buffer);
        return new PooledBuffer<T>(this, buffer, length);
    }

    /// <summary>A new device buffer; when the device is full, dead tensors' and free cached buffers go back and it tries
    /// once more, then fails with one line naming the size asked for and the size free.</summary>
    private MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long capacity) where T : unmanaged
    {
        long bytes = capacity * Interop.SizeOf<T>();
        try { return accelerator.Allocate1D<T>(capacity); }
        catch (Exception first) when (DeviceMemory.IsOutOfMemory(first))
        {
            // Tensors no longer referenced give their buffers back in their finalizers: run them first.
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Trim();
            try { return accelerator.Allocate1D<T>(capacity); }
            catch (Exception second) when (DeviceMemory.IsOutOfMemory(second))
            {
                lock (gate)
                {
                    Allocations--;
                    BytesAllocated -= bytes;
                    BytesRented -= bytes;
                }
                throw new DeviceOutOfMemoryException(DeviceMemory.Describe(accelerator, bytes, BytesAllocated));
            }
        }
    }

    internal void Return<T>(MemoryBuffer1D<T, Stride1D.Dense> buffer) where T : unmanaged
    {
        lock (gate)
        {
            var key = (typeof(T), buffer.Length);
            if (!free.TryGetValue(key, out var stack)) free[key] = stack = new Stack<MemoryBuffer>();
            stack.Push(buffer);
            rented.Remove(buffer);
            BytesRented -= buffer.LengthInBytes;
        }
    }

    /// <summary>Frees every buffer not rented out.</summary>
    public void Trim()
    {
        lock (gate)
        {
            foreach (var stack in free.Values)
                while (stack.Count > 0)
                {
                    var buffer = stack.Pop();
                    BytesAllocated -= buffer.LengthInBytes;
                    buffer.Dispose();
                }
            free.Clear();
        }
    }

    public void Dispose() => Trim();
}

/// <summary>A rented device buffer: View is exactly the length asked for. Dispose returns it to the pool.</summary>
public sealed class PooledBuffer<T>(BufferPool pool, MemoryBuffer1D<T, Stride1D.Dense> buffer, long length) : IDisposable
    where T : unmanaged
{
    private bool returned;

    public long Length => length;
    public ArrayView1D<T, Stride1D.Dense> View => returned
        ? throw new ObjectDisposedException(nameof(PooledBuffer<T>), "this buffer went back to its pool")
        : buffer.View.SubView(0, length);

    /// <summary>Copies host data into the start of the buffer (host.Length must not exceed Length).</summary>
    public void Upload(ReadOnlySpan<T> host)
    {
        if (host.Length > length) throw new ArgumentException($"upload of {host.Length} elements into a buffer of {length}");
        buffer.AsArrayView<T>(0, host.Length).CopyFromCPU(host);
    }

    /// <summary>Copies the start of the buffer back to the host (waits for the kernels before it).</summary>
    public void Download(Span<T> host)
    {
        if (host.Length > length) throw new ArgumentException($"download of {host.Length} elements from a buffer of {length}");
        buffer.AsArrayView<T>(0, host.Length).CopyToCPU(host);
    }

    public void Dispose()
    {
        if (returned) return;
        returned = true;
        pool.Return(buffer);
    }
}
