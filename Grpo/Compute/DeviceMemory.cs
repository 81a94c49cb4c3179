// Device memory: how much is free, and the one-line error when an allocation does not fit.
// On CUDA the free and total bytes come from the driver (cuMemGetInfo); elsewhere only the
// accelerator's total is known. BufferPool turns an allocation failure into DeviceOutOfMemoryException
// naming the size asked for and the size free, after giving its cached buffers back and retrying once.
// Tests: Grpo.Tests/Compute/BufferPoolTests.cs.
using System.Runtime.InteropServices;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Grpo.Compute;

public sealed class DeviceOutOfMemoryException(string message) : Exception(message);

public static class DeviceMemory
{
    [DllImport("libcuda.so.1", EntryPoint = "cuMemGetInfo_v2")]
    private static extern int CuMemGetInfo(out nuint free, out nuint total);

    /// <summary>(free, total) bytes; free is null where the device cannot say.</summary>
    public static (long? Free, long Total) Query(Accelerator accelerator)
    {
        if (accelerator is CudaAccelerator)
        {
            try
            {
                accelerator.Bind();
                if (CuMemGetInfo(out var free, out var total) == 0) return ((long)free, (long)total);
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        }
        return (null, accelerator.MemorySize);
    }

    public static bool IsOutOfMemory(Exception e) =>
        e is OutOfMemoryException
        || e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase)
        || e.Message.Contains("OUT_OF_MEMORY", StringComparison.Ordinal);

    public static string Describe(Accelerator accelerator, long bytesAsked, long bytesHeldByPool)
    {
        var (free, total) = Query(accelerator);
        string freeText = free is { } f ? $"{Size(f)} free" : "free size unknown";
        return $"out of device memory on {accelerator.Name}: asked for {Size(bytesAsked)}, {freeText} of {Size(total)} ({Size(bytesHeldByPool)} held by Grpo's buffer pool)";
    }

    public static string Size(long bytes) => bytes >= 1L << 30 ? $"{bytes / (double)(1L << 30):F2} GiB" : $"{bytes / (double)(1L << 20):F1} MiB";
}
