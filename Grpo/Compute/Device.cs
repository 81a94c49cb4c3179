// Device: where tensors live and ops run, chosen once at start and passed in (no global default).
//
//   Device.Cpu                   the reference: plain C# (CpuGemm, TensorPrimitives); no ILGPU at all
//   Device.Create("cuda")        an NVIDIA GPU through ILGPU (kernels in Compute/Kernels/, PTX, sm_80)
//   Device.Create("auto")        CUDA when a device is present, else Device.Cpu
//   Device.CreateCpuAccelerator  ILGPU's CPU accelerator: runs the same kernels, thread by simulated
//                                thread; only for testing kernels at tiny shapes where there is no GPU
//                                (100 to 1000 times slower than plain C#, never a backend)
//
// The ILGPU context is built as shared/GPU.md found it must be: Cuda() and CPU(...) devices,
// EnableAlgorithms() (else XMath.Exp/Log do not compile for CUDA), Optimize(O2). ILGPU opens
// `libcuda.so`; a machine with only the driver's `libcuda.so.1` would silently show no CUDA device,
// so a DllImport resolver for ILGPU's assembly tries the `.1` name too.
// Each ILGPU device owns a KernelCache (kernels compiled once) and a BufferPool (no cudaMalloc per op).
// The host-side ops (upload, run, download) are in DeviceHostOps.cs.
// Tests: Grpo.Tests/Compute/DeviceTests.cs, KernelTests.cs, PtxCompileTests.cs.
using System.Reflection;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace Grpo.Compute;

public enum DeviceKind { Cpu, Cuda, CpuAccelerator }

/// <summary>Thrown when the device asked for is not there; its message is one line meant for the user.</summary>
public sealed class DeviceUnavailableException(string message) : Exception(message);

public sealed partial class Device : IDisposable
{
    /// <summary>The CPU reference device. It holds no ILGPU state and is never disposed.</summary>
    public static Device Cpu { get; } = new(DeviceKind.Cpu, "cpu (plain C#)", null, null);

    /// <summary>The names Create accepts.</summary>
    public static readonly string[] Names = ["auto", "cpu", "cuda", "cpu-accelerator"];

    public DeviceKind Kind { get; }
    /// <summary>What the device is, in words, e.g. "cuda: NVIDIA H200 (SM_90, 132 SMs, 139.8 GiB)".</summary>
    public string Description { get; }
    public bool IsCpu => Kind == DeviceKind.Cpu;
    /// <summary>The name Create takes for it: cpu, cuda or cpu-accelerator.</summary>
    public string Name => Kind switch { DeviceKind.Cpu => "cpu", DeviceKind.Cuda => "cuda", _ => "cpu-accelerator" };

    private readonly Context? context;
    private readonly Accelerator? accelerator;
    private KernelCache? kernels;
    private BufferPool? pool;

    private Device(DeviceKind kind, string description, Context? context, Accelerator? accelerator)
    {
        Kind = kind; Description = description; this.context = context; this.accelerator = accelerator;
    }

    /// <summary>The ILGPU accelerator; throws on Device.Cpu, which runs no kernels.</summary>
    public Accelerator Accelerator => accelerator ?? throw new InvalidOperationException("Device.Cpu has no ILGPU accelerator");
    /// <summary>This accelerator's compiled kernels, each loaded on first use.</summary>
    public KernelCache Kernels => kernels ??= new KernelCache(Accelerator);
    /// <summary>This accelerator's pooled buffers.</summary>
    public BufferPool Pool => pool ??= new BufferPool(Accelerator);

    /// <summary>auto | cpu | cuda | cpu-accelerator. "cuda" without a CUDA device throws DeviceUnavailableException.</summary>
    public static Device Create(string name)
    {
        switch (name.Trim().ToLowerInvariant())
        {
            case "cpu": return Cpu;
            case "cpu-accelerator": return CreateCpuAccelerator();
            case "cuda": return CreateCuda() ?? throw new DeviceUnavailableException(
                "no CUDA device found (ILGPU sees none: is an NVIDIA GPU and its driver's libcuda.so.1 present?)");
            case "auto": return CreateCuda() ?? Cpu;
            default: throw new DeviceUnavailableException($"unknown device '{name}' (expected one of {string.Join(", ", Names)})");
        }
    }

    /// <summary>
    /// ILGPU's CPU accelerator with warp size 32 (as on NVIDIA) and groups of warpsPerGroup warps.
    /// The matmul kernel needs groups of MatMulKernels.ThreadsPerGroup threads (8 warps); every
    /// simulated thread is an OS thread, so keep the rest small.
    /// </summary>
    public static Device CreateCpuAccelerator(int warpsPerGroup = 8, int multiprocessors = 1)
    {
        var cpu = new CPUDevice(32, warpsPerGroup, multiprocessors);
        var ctx = Context.Create(b => b.CPU(cpu).EnableAlgorithms().Optimize(OptimizationLevel.O2));
        var acc = ctx.CreateCPUAccelerator(0);
        return new Device(DeviceKind.CpuAccelerator,
            $"cpu-accelerator: ILGPU CPU accelerator (warp 32, {warpsPerGroup} warps a group, {multiprocessors} multiprocessor(s))", ctx, acc);
    }

    /// <summary>The first CUDA device, or null when ILGPU sees none.</summary>
    private static Device? CreateCuda()
    {
        InstallCudaLibraryResolver();
        Context ctx;
        try
        {
            ctx = Context.Create(b => b.Cuda().CPU(new CPUDevice(32, 8, 1)).EnableAlgorithms().Optimize(OptimizationLevel.O2));
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
        {
            return null;
        }
        var devices = ctx.GetCudaDevices();
        if (devices.Count == 0) { ctx.Dispose(); return null; }
        var acc = ctx.CreateCudaAccelerator(0);
        string description = $"cuda: {acc.Name} ({acc.Architecture}, {acc.NumMultiprocessors} SMs, " +
                             $"{acc.MemorySize / (double)(1L << 30):F1} GiB, PTX ISA {acc.InstructionSet}, driver {acc.DriverVersion})";
        return new Device(DeviceKind.Cuda, description, ctx, acc);
    }

    private static int resolverInstalled;

    /// <summary>Lets ILGPU's DllImports of "libcuda.so" (or any "x.so") fall back to "x.so.1".</summary>
    private static void InstallCudaLibraryResolver()
    {
        if (Interlocked.Exchange(ref resolverInstalled, 1) == 1) return;
        try
        {
            NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, ResolveWithSoVersion);
        }
        catch (InvalidOperationException)
        {
            // ILGPU set its own resolver (it does on WSL); that one knows where the library is.
        }
    }

    private static IntPtr ResolveWithSoVersion(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (NativeLibrary.TryLoad(libraryName, assembly, searchPath, out var handle)) return handle;
        if (libraryName.EndsWith(".so", StringComparison.Ordinal) &&
            NativeLibrary.TryLoad(libraryName + ".1", assembly, searchPath, out handle)) return handle;
        if (libraryName == "cuda" && NativeLibrary.TryLoad("libcuda.so.1", assembly, searchPath, out handle)) return handle;
        return IntPtr.Zero;
    }

    /// <summary>Waits until every kernel launched so far has finished.</summary>
    public void Synchronize() => accelerator?.Synchronize();

    public override string ToString() => Description;

    public void Dispose()
    {
        if (IsCpu) return;
        pool?.Dispose();
        accelerator?.Dispose();
        context?.Dispose();
    }
}
