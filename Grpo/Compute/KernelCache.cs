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

    /// <summary>The kernel loaded under this name, loading it the first time.</summary>
    public TDelegate Get<TDelegate>(string name, Func<Accelerator, TDelegate> load) where TDelegate : Delegate =>
        (TDelegate)loaded.GetOrAdd(name, _ => load(accelerator));

    /// <summary>The kernel loaded under this name, if it has been.</summary>
    public bool TryGet<TDelegate>(string name, out TDelegate? kernel) where TDelegate : Delegate
    {
        kernel = loaded.TryGetValue(name, out var found) ? (TDelegate)found : null;
        return kernel != null;
    }

    /// <summary>How many kernels have been compiled so far.</summary>
    public int Count => loaded.Count;
}
