// The kill test: `grpo sft` runs in a child process (the built Grpo.dll beside this test assembly, run
// with `dotnet`), is killed with SIGKILL (Process.Kill) at several moments (before its first step,
// and a few milliseconds after its metrics.jsonl reaches three different steps, so the kill lands in
// a step, between steps or in a checkpoint write), and is resumed with --resume each time. After each
// kill the newest checkpoint must verify and at most the steps since it be lost (metrics lines past
// it); at the end the run must finish (exit 0) with a verified checkpoint of the last step, and its
// metrics.jsonl and final weights must be byte for byte those of a run that was never killed.
// The figures (kills survived, steps lost each time) go to the test output.
using System.Diagnostics;
using System.Text.Json.Nodes;
using Grpo.Cli;
using Grpo.Model;
using Xunit.Abstractions;

namespace Grpo.Tests.Reliability;

public sealed class KillTests(ITestOutputHelper output) : IDisposable
{
    private const int Steps = 60, CheckpointEvery = 4;
    private readonly string root = Directory.CreateTempSubdirectory("grpo-kill-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    private static Process StartSft(string outDir)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "Grpo.dll");
        Assert.True(File.Exists(dll), $"the built program is missing: {dll}");
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var arg in new[] { dll, "sft", "--preset", "tiny", "--context-length", "128", "--steps", $"{Steps}", "--warmup-steps", "5",
                     "--batch-size", "8", "--seed", "3", "--checkpoint-every", $"{CheckpointEvery}", "--resume", "--out", outDir })
            start.ArgumentList.Add(arg);
        var process = Process.Start(start)!;
        process.BeginOutputReadLine();   // drained so that a full pipe never blocks the child
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>The steps of metrics.jsonl's complete lines (a line cut short by the kill is not one).</summary>
    private static int LoggedSteps(string outDir)
    {
        string path = Path.Combine(outDir, TrainingRun.MetricsFile);
        if (!File.Exists(path)) return 0;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        string text = new StreamReader(stream).ReadToEnd();
        int steps = 0;
        foreach (var line in text.Split('\n'))
        {
            try { if ((JsonNode.Parse(line) as JsonObject)?["step"]?.GetValue<int>() is int step) steps = step; }
            catch (Exception) { break; }
        }
        return steps;
    }

    [Fact(Timeout = 120_000)]
    public Task SftKilledThreeTimesFinishesWithTheSameWeights() => Task.Run(() =>
    {
        var clock = Stopwatch.StartNew();
        string reference = Path.Combine(root, "reference"), killed = Path.Combine(root, "killed");
        using (var run = StartSft(reference))
        {
            Assert.True(run.WaitForExit(60_000));
            Assert.Equal(0, run.ExitCode);
        }

        // (metrics line to wait for, then milliseconds before SIGKILL); 0 lines: kill 150 ms after start.
        (int Line, int DelayMs)[] moments = [(0, 150), (9, 0), (26, 3), (43, 7)];
        var figures = new List<string>();
        foreach (var (line, delay) in moments)
        {
            using var run = StartSft(killed);
            var waited = Stopwatch.StartNew();
            while (line > 0 && LoggedSteps(killed) < line && !run.HasExited && waited.ElapsedMilliseconds < 30_000) Thread.Sleep(1);
            Thread.Sleep(delay);
            Assert.False(run.HasExited, $"the run ended before the kill at line {line} + {delay} ms");
            run.Kill(entireProcessTree: true);
            run.WaitForExit();

            int logged = LoggedSteps(killed);
            var newest = CheckpointStore.Newest(killed);
            if (newest.Path != null) CheckpointStore.Verify(newest.Path);
            int saved = Math.Max(0, newest.Step);
            int lost = logged - saved;
            figures.Add($"kill after line {line} + {delay} ms: {logged} steps logged, newest checkpoint step {saved}, {lost} steps lost");
            Assert.InRange(lost, 0, CheckpointEvery);
        }

        using (var run = StartSft(killed))
        {
            Assert.True(run.WaitForExit(60_000));
            Assert.Equal(0, run.ExitCode);
        }
        var final = CheckpointStore.Newest(killed);
        Assert.Equal(Steps, final.Step);
        CheckpointStore.Verify(final.Path!);
        foreach (var file in new[] { TrainingRun.MetricsFile, Checkpoint.ModelFile, Checkpoint.OptimizerFile })
            Assert.True(File.ReadAllBytes(Path.Combine(reference, file)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(killed, file))),
                $"{file} of the killed and resumed run differs from the run never killed");
        output.WriteLine($"{moments.Length} kills survived in {clock.Elapsed.TotalSeconds:F1} s (checkpoint every {CheckpointEvery} of {Steps} steps):");
        foreach (var figure in figures) output.WriteLine("  " + figure);
    });
}
