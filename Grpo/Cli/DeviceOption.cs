// `--device auto|cpu|cuda`, shared by every command that runs ops: the option, and opening the
// device it names with the house's one-line error (no stack trace) when it is not there.
// auto takes CUDA when ILGPU sees a CUDA device, else the CPU. Device selection: Compute/Device.cs.
// The commands that train and sample (sft, grpo, eval, demo, sample) run on the CPU reference for now
// (the CUDA kernels exist and are checked by `grpo check`, but tensors live on the host): for them
// auto means the CPU, with a one-line note on stderr when a CUDA device sits unused, and cuda is
// refused in one line rather than quietly run on the CPU. Tests: Grpo.Tests/Cli/CommandWiringTests.cs.
using System.CommandLine;
using Grpo.Compute;

namespace Grpo.Cli;

public static class DeviceOption
{
    /// <summary>The --device option; `also` adds names beyond auto|cpu|cuda (check takes cpu-accelerator).</summary>
    public static Option<string> Create(string defaultName = "auto", params string[] also)
    {
        string names = string.Join("|", new[] { "auto", "cpu", "cuda" }.Concat(also));
        return new Option<string>("--device")
        {
            Description = $"{names}: where ops run (auto takes CUDA when a device is present)",
            DefaultValueFactory = _ => defaultName,
        };
    }

    /// <summary>The --device option of the commands that train and sample on the CPU reference.</summary>
    public static Option<string> CreateCpuOnly() => new("--device")
    {
        Description = "auto|cpu|cuda: training and sampling run on the CPU for now; auto uses the CPU (noting an unused GPU), cuda is refused",
        DefaultValueFactory = _ => "auto",
    };

    /// <summary>The device a CPU-only command runs on ("cpu"); ArgumentException (one line) for cuda or an
    /// unknown name. With auto and a CUDA device present, one note on <paramref name="notes"/>.</summary>
    public static string ResolveCpuOnly(string name, TextWriter notes)
    {
        switch (name.Trim().ToLowerInvariant())
        {
            case "cpu":
                return "cpu";
            case "auto":
                using (var probe = TryOpenCuda())
                    if (probe is not null)
                        notes.WriteLine($"note: {probe.Description.Split(" (")[0]} is present but unused: training and sampling run on the CPU for now (--device cpu hides this note)");
                return "cpu";
            case "cuda":
                throw new ArgumentException("--device cuda: training and sampling on CUDA are not supported yet (the kernels are checked by `grpo check --device cuda`); use --device cpu");
            default:
                throw new ArgumentException($"unknown device '{name}' (expected auto, cpu or cuda)");
        }
    }

    private static Device? TryOpenCuda()
    {
        try
        {
            var device = Device.Create("auto");
            return device.IsCpu ? null : device;
        }
        catch (Exception)
        {
            // A broken driver is no reason to stop a run that uses the CPU anyway.
            return null;
        }
    }

    /// <summary>The device named, or null after printing `error: ...` on one line to stderr.</summary>
    public static Device? Open(string name)
    {
        try
        {
            return Device.Create(name);
        }
        catch (DeviceUnavailableException error)
        {
            Console.Error.WriteLine($"error: {error.Message}");
            return null;
        }
        catch (Exception error)
        {
            // ILGPU failing inside the driver (a broken install, a busy or lost GPU) lands here.
            Console.Error.WriteLine($"error: could not open device '{name}': {error.GetType().Name}: {FirstLine(error.Message)}");
            return null;
        }
    }

    internal static string FirstLine(string text) => text.Split('\n', 2)[0].Trim();
}
