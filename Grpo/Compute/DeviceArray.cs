// DeviceArray: the storage of a tensor that lives on a GPU (Tensors/Tensor.cs): a pooled device
// buffer of floats, given back to its device's BufferPool when the tensor is released.
//
// Who gives it back: a tensor's storage has no single owner (a reshape shares it; an op's backward
// keeps its inputs alive until the backward has run), so, as for host arrays, the garbage collector
// decides: the finalizer returns the buffer to the pool. Two things keep device memory bounded:
// - each live DeviceArray adds its bytes as memory pressure (GC.AddMemoryPressure), so the collector
//   runs sooner when device memory is being used up, not only when the managed heap grows;
// - where a buffer is known to be dead, it goes back at once (Release): Autograd.Backward releases
//   every intermediate gradient as soon as its node's backward has run, the generator releases each
//   step's activations.
// Reuse is safe without synchronising: all kernels and copies run on the device's one stream, in
// order, so a buffer released while a queued kernel still reads it is only written after that kernel.
// Tests: Grpo.Tests/Compute/DeviceTensorTests.cs.
using ILGPU;
using ILGPU.Runtime;

namespace Grpo.Compute;

public sealed class DeviceArray
{
    private PooledBuffer<float>? buffer;
    private readonly long pressure;

    public Device Device { get; }
    public long Length { get; }

    /// <summary>length floats on device, contents undefined (zeroed when zero is true).</summary>
    public DeviceArray(Device device, long length, bool zero = false)
    {
        Device = device;
        Length = length;
        buffer = device.Pool.Rent<float>(Math.Max(1, length));
        if (zero && length > 0) View.MemSetToZero();
        pressure = Math.Max(1, length) * sizeof(float);
        GC.AddMemoryPressure(pressure);
    }

    /// <summary>A copy of host values on device.</summary>
    public static DeviceArray Upload(Device device, ReadOnlySpan<float> values)
    {
        var array = new DeviceArray(device, values.Length);
        if (values.Length > 0) array.buffer!.Upload(values);
        return array;
    }

    /// <summary>The values, exactly Length long; throws once released.</summary>
    public ArrayView<float> View => buffer is { } b
        ? b.View.SubView(0, Length)
        : throw new ObjectDisposedException(nameof(DeviceArray), "this tensor's device memory was released");

    /// <summary>A host copy of the values (waits for the kernels before it).</summary>
    public float[] ToArray() => Device.DownloadArray(View);

    /// <summary>Gives the buffer back to the pool now; the array must not be used after.</summary>
    public void Release()
    {
        var b = Interlocked.Exchange(ref buffer, null);
        if (b == null) return;
        b.Dispose();
        GC.RemoveMemoryPressure(pressure);
        GC.SuppressFinalize(this);
    }

    ~DeviceArray()
    {
        var b = Interlocked.Exchange(ref buffer, null);
        if (b == null) return;
        b.Dispose();
        GC.RemoveMemoryPressure(pressure);
    }
}
