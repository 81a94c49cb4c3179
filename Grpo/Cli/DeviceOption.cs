// `--device auto|cpu|cuda`, shared by every command that runs ops: the option, and opening the
// device it names with the house's one-line error (no stack trace) when it is not there.
// auto takes CUDA when ILGPU sees a CUDA device, else the CPU. Device selection: Compute/Device.cs.
// The commands that train and sample (sft, grpo, eval, demo, sample, experiment) open it with
// OpenForRun and move their model there (Transformer.To): with a GPU, sampling, the forward and
// backward passes and AdamW run on it. Tests: Grpo.Tests/Cli/CommandWiringTests.cs.
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

    /// <summary>
    /// The device a command that trains or samples runs on: auto (CUDA when ILGPU sees a device, else the
    /// CPU), cpu or cuda. Bad names and a missing GPU are an ArgumentException of one line (CliErrors prints it).
    /// </summary>
    public static Device OpenForRun(string name)
    {
        string key = name.Trim().ToLowerInvariant();
        if (key is not ("auto" or "cpu" or "cuda")) throw new ArgumentException($"unknown device '{name}' (expected auto, cpu or cuda)");
        try
        {
            return Device.Create(key);
        }
        catch (DeviceUnavailableException error)
        {
            throw new ArgumentException(error.Message);
        }
        catch (Exception error) when (error is not ArgumentException)
        {
            // ILGPU failing inside the driver (a broken install, a busy or lost GPU) lands here.
            throw new ArgumentException($"could not open device '{name}': {error.GetType().Name}: {FirstLine(error.Message)}");
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
