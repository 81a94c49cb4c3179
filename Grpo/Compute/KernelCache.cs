// KernelCache: each accelerator's compiled kernels, loaded once and kept.
//
// Loading a kernel compiles it (IL -> ILGPU IR -> PTX, then the driver JIT-compiles the PTX):
// about 0.5 s for the first on an H200 and 20 ms each after (shared/GPU.md), far too slow per call.
// Kernel files expose a loader (Accelerator -> launch delegate); the cache keys it by name.
// Launchers ask the cache once per launch, which makes it the place to count launches and, with the
// environment variable GRPO_PROFILE=1, to profile: every request then synchronises the device and
// charges the time since the previous request to the previous kernel's name, split in two: host (from
// the previous request to this one: that launch and the host work after it) and wait (for the device
// to finish, after that: the kernel's run not hidden behind the host work); a kernel's first launch,
// which compiles it, is left out. The table goes to stderr when the process ends. Slow, for finding
// hot spots.
// Tests: Grpo.Tests/Compute/KernelTests.cs (every kernel runs through this cache).
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Grpo.Compute;

public sealed class KernelCache
{
    private readonly Accelerator accelerator;
    private readonly ConcurrentDictionary<string, Delegate> loaded = new();
    private long requests;
    private readonly Dictionary<string, (double Host, double Wait, int Count)>? profile;
    private readonly Stopwatch clock = Stopwatch.StartNew();
    private string? previous;
    private readonly HashSet<string> compiling = new();
    private double previousAt;

    public KernelCache(Accelerator accelerator)
    {
        this.accelerator = accelerator;
        if (Environment.GetEnvironmentVariable("GRPO_PROFILE") == "1")
        {
            profile = new();
            AppDomain.CurrentDomain.ProcessExit += (_, _) => PrintProfile();
        }
    }

    /// <summary>The kernel loaded under this name, loading it the first time. Launchers ask once per launch.</summary>
    public TDelegate Get<TDelegate>(string name, Func<Accelerator, TDelegate> load) where TDelegate : Delegate
    {
        Interlocked.Increment(ref requests);
        if (profile != null) Charge(name);
        return (TDelegate)loaded.GetOrAdd(name, _ => load(accelerator));
    }

    /// <summary>How many launches have asked for a kernel (bench reports launches per step).</summary>
    public long Launches => Interlocked.Read(ref requests);

    /// <summary>The kernel loaded under this name, if it has been.</summary>
    public bool TryGet<TDelegate>(string name, out TDelegate? kernel) where TDelegate : Delegate
    {
        kernel = loaded.TryGetValue(name, out var found) ? (TDelegate)found : null;
        return kernel != null;
    }

    /// <summary>
    /// What the driver's compiler made of a loaded kernel on CUDA (CU_FUNC_ATTRIBUTE_NUM_REGS and
    /// LOCAL_SIZE_BYTES): past 128 registers a thread only one group of 256 fits on an SM; local bytes
    /// are spills. Null before the kernel is loaded, or off CUDA.
    /// </summary>
    public (int Registers, int LocalBytes)? Attributes(string name) =>
        Attribute(name, 4) is int registers && Attribute(name, 3) is int local ? (registers, local) : null;

    /// <summary>The most threads a group of this loaded kernel may have on CUDA (CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
    /// what its registers allow); null before it is loaded, or off CUDA.</summary>
    public int? MaxGroupSize(string name) => Attribute(name, 0);

    /// <summary>cuFuncGetAttribute of a loaded kernel on CUDA; null before it is loaded, off CUDA, or on a driver error.</summary>
    private int? Attribute(string name, int attribute)
    {
        if (accelerator is not CudaAccelerator || !loaded.TryGetValue(name, out var launcher)) return null;
        var function = ((CudaKernel)launcher.GetKernel()).FunctionPtr;
        accelerator.Bind();
        return CuFuncGetAttribute(out int value, attribute, function) == 0 ? value : null;
    }

    [DllImport("libcuda.so.1", EntryPoint = "cuFuncGetAttribute")]
    private static extern int CuFuncGetAttribute(out int value, int attribute, IntPtr function);

    /// <summary>How many kernels have been compiled so far.</summary>
    public int Count => loaded.Count;

    private void Charge(string name)
    {
        lock (profile!)
        {
            double requested = clock.Elapsed.TotalMilliseconds;
            accelerator.Synchronize();
            double now = clock.Elapsed.TotalMilliseconds;
            // A kernel's first launch also compiles it (tens to hundreds of ms): left out of the table.
            if (previous != null && !compiling.Add(previous))
            {
                var (host, wait, count) = profile.GetValueOrDefault(previous);
                profile[previous] = (host + requested - previousAt, wait + now - requested, count + 1);
            }
            previous = name;
            previousAt = clock.Elapsed.TotalMilliseconds;
        }
    }

    private void PrintProfile()
    {
        lock (profile!)
        {
            double total = profile.Values.Sum(v => v.Host + v.Wait);
            Console.Error.WriteLine($"GRPO_PROFILE: {total:F1} ms in {profile.Values.Sum(v => v.Count)} launches; per kernel: host = its launch and the host work until the next one, wait = the device still busy after that");
            Console.Error.WriteLine($"  {"kernel",-32} {"host ms",10} {"wait ms",10} {"launches",8} {"us each",9}");
            foreach (var (name, (host, wait, count)) in profile.OrderByDescending(p => p.Value.Host + p.Value.Wait).Take(25))
                Console.Error.WriteLine($"  {name,-32} {host,10:F1} {wait,10:F1} {count,8} {1000 * (host + wait) / count,9:F1}");
        }
    }
}
