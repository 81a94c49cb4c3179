// KernelCache: each accelerator's compiled kernels, loaded once and kept.
//
// Loading a kernel compiles it (IL -> ILGPU IR -> PTX, then the driver JIT-compiles the PTX):
// about 0.5 s for the first on an H200 and 20 ms each after (shared/GPU.md), far too slow per call.
// Kernel files expose a loader (Accelerator -> launch delegate); the cache keys it by name.
// Tests: Grpo.Tests/Compute/KernelTests.cs (every kernel runs through this cache).
using System.Collections.Concurrent;
using ILGPU.Runtime;

namespace Grpo.Compute;

public sealed class KernelCache(Accelerator accelerator)
{
    private readonly ConcurrentDictionary<string, Delegate> loaded = new();
    private long requests;

    /// <summary>The kernel loaded under this name, loading it the first time. Launchers ask once per launch.</summary>
    public TDelegate Get<TDelegate>(string name, Func<Accelerator, TDelegate> load) where TDelegate : Delegate
    {
        Interlocked.Increment(ref requests);
        return (TDelegate)loaded.GetOrAdd(name, _ => load(accelerator));
    }

    /// <summary>How many launches have asked for a kernel (bench reports launches per step).</summary>
    public long Launches => Interlocked.Read(ref requests);

    /// <summary>How many kernels have been compiled so far.</summary>
    public int Count => loaded.Count;
}
