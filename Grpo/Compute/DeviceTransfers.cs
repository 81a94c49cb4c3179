// Host <-> device copies for the host-side launchers (the `Host` classes at the end of each file in
// Compute/Kernels/): upload an array into a pooled buffer, download a buffer into a new array.
// These round trips are what tests and `grpo check` use; a device-resident step calls the kernels'
// view launchers directly and never comes back to the host between ops.
// Tests: every kernel test in Grpo.Tests/Compute/ goes through these.
using ILGPU;
using ILGPU.Runtime;

namespace Grpo.Compute;

public sealed partial class Device
{
    /// <summary>A pooled device buffer holding a copy of host (dispose it to give it back).</summary>
    public PooledBuffer<T> UploadToPool<T>(ReadOnlySpan<T> host) where T : unmanaged
    {
        var buffer = Pool.Rent<T>(host.Length);
        if (host.Length > 0) buffer.Upload(host);
        return buffer;
    }

    /// <summary>A pooled device buffer of length elements, all zero.</summary>
    public PooledBuffer<T> Zeros<T>(long length) where T : unmanaged
    {
        var buffer = Pool.Rent<T>(length);
        if (length > 0) buffer.View.MemSetToZero();
        return buffer;
    }

    /// <summary>The first length elements of a device view, as a new host array (waits for the kernels before it).</summary>
    public static T[] DownloadArray<T>(ArrayView<T> view) where T : unmanaged
    {
        var host = new T[view.Length];
        if (host.Length > 0) view.CopyToCPU(host);
        return host;
    }
}
