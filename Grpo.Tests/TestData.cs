// Where the shared data sets are for tests: shared/ sits beside the repository (at /work/shared for
// /work/main, and beside the clone in CI), so walk up from the test assembly's folder until a
// folder holds shared/data/gsm8k/test.jsonl. Tests that need it use [SkippableFact] and
// Skip.If(TestData.Gsm8kDir is null, TestData.Gsm8kMissing), so its absence reads as SKIPPED, not passed.
namespace Grpo.Tests;

public static class TestData
{
    /// <summary>The folder holding GSM8K's train.jsonl and test.jsonl, or null when none is found.</summary>
    public static string? Gsm8kDir { get; } = FindUp(Path.Combine("shared", "data", "gsm8k"), "test.jsonl");

    public const string Gsm8kMissing = "shared/data/gsm8k/test.jsonl not found in any folder above the test assembly";

    private static string? FindUp(string relativeDir, string fileName)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, relativeDir);
            if (File.Exists(Path.Combine(candidate, fileName))) return candidate;
        }
        return null;
    }
}
