// `grpo explain ... --json` against an independent implementation, Grpo.Tests/Reference/grpo_reference.py
// (plain Python 3, float64, written from the paper, with its own derivation of the gradient), on
// seeded random cases: 20 advantage groups, 20 KL tokens and 20 loss cases. Our side runs the
// command's handler in-process (ExplainCommand.Run); Python runs once on all cases. Every number must
// agree within 1e-5 (relative above 1). python3 is required: without it the test fails and says so.
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpo.Sampling;
using Xunit.Abstractions;

namespace Grpo.Tests.Rl;

public class ReferenceAgreementTests(ITestOutputHelper log)
{
    private const int CasesPerKind = 20;
    private const double Tolerance = 1e-5;

    [Fact]
    public void ExplainAgreesWithThePythonReference()
    {
        var rng = new Rng(20240205);
        var cases = new List<(JsonObject Reference, string[] Args, string? CaseFile)>();
        for (int n = 0; n < CasesPerKind; n++) cases.Add(AdvantagesCase(rng));
        for (int n = 0; n < CasesPerKind; n++) cases.Add(KlCase(rng));
        for (int n = 0; n < CasesPerKind; n++) cases.Add(LossCase(rng));

        var expected = RunPython(new JsonArray(cases.Select(c => (JsonNode)c.Reference).ToArray()));
        double worstAbsolute = 0;
        for (int i = 0; i < cases.Count; i++)
        {
            var (exitCode, output, error) = ExplainCommandTests.Explain(cases[i].Args);
            if (cases[i].CaseFile != null) File.Delete(cases[i].CaseFile!);
            Assert.True(exitCode == 0, $"case {i} ({string.Join(' ', cases[i].Args)}): {error}");
            var ours = JsonNode.Parse(output.TrimEnd().Split('\n')[^1])!;
            worstAbsolute = Math.Max(worstAbsolute, Compare(ours, expected[i]!, $"case {i} ({cases[i].Reference["kind"]})"));
        }
        log.WriteLine($"{cases.Count} cases (advantages, kl, loss + gradient) vs grpo_reference.py: max abs difference {worstAbsolute:G3}, tolerance {Tolerance}: OK");
    }

    /// <summary>Walks both JSON trees together; returns the largest absolute difference, fails on the first beyond tolerance.</summary>
    private static double Compare(JsonNode ours, JsonNode reference, string where)
    {
        switch (reference)
        {
            case JsonObject referenceObject:
                double worst = 0;
                foreach (var (key, value) in referenceObject)
                {
                    var mine = ours[key] ?? throw new Xunit.Sdk.XunitException($"{where}: our output has no '{key}'");
                    worst = Math.Max(worst, Compare(mine, value!, $"{where}.{key}"));
                }
                return worst;
            case JsonArray referenceArray:
                var ourArray = ours.AsArray();
                Assert.True(ourArray.Count == referenceArray.Count, $"{where}: {ourArray.Count} values, reference {referenceArray.Count}");
                double worstInArray = 0;
                for (int i = 0; i < referenceArray.Count; i++)
                    worstInArray = Math.Max(worstInArray, Compare(ourArray[i]!, referenceArray[i]!, $"{where}[{i}]"));
                return worstInArray;
            default:
                double a = ours.GetValue<double>(), b = reference.GetValue<double>();
                double difference = Math.Abs(a - b);
                Assert.True(difference <= Tolerance * Math.Max(1, Math.Abs(b)), $"{where}: ours {a:R}, reference {b:R}, difference {difference:G3}: NOT OK");
                return difference;
        }
    }

    private static (JsonObject, string[], string?) AdvantagesCase(Rng rng)
    {
        int groupSize = rng.NextInt(2, 6), groups = rng.NextInt(1, 3);
        bool binary = rng.NextInt(2) == 0;   // rule rewards: many constant groups
        var rewards = Enumerable.Range(0, groupSize * groups).Select(_ => binary ? rng.NextInt(2) : MathF.Round(rng.NextGaussian() * 2, 3)).ToArray();
        string std = rng.NextInt(2) == 0 ? "population" : "sample";
        string scale = new[] { "group", "batch", "none" }[rng.NextInt(3)];
        double eps = new[] { 0, 1e-4, 0.1 }[rng.NextInt(3)];
        string rewardText = string.Join(",", rewards.Select(r => r.ToString("R", CultureInfo.InvariantCulture)));
        var reference = new JsonObject
        {
            ["kind"] = "advantages", ["rewards"] = new JsonArray(rewards.Select(r => (JsonNode)JsonValue.Create(double.Parse(r.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture))!).ToArray()),
            ["groupSize"] = groupSize, ["std"] = std, ["scale"] = scale, ["eps"] = eps,
        };
        return (reference, ["advantages", "--rewards", rewardText, "--group-size", groupSize.ToString(CultureInfo.InvariantCulture),
            "--std", std, "--scale", scale, "--eps", eps.ToString("R", CultureInfo.InvariantCulture), "--json"], null);
    }

    private static (JsonObject, string[], string?) KlCase(Rng rng)
    {
        double logp = Math.Round(-5 * rng.NextDouble(), 6), refLogp = Math.Round(-5 * rng.NextDouble(), 6);
        var reference = new JsonObject { ["kind"] = "kl", ["logp"] = logp, ["refLogp"] = refLogp };
        return (reference, ["kl", "--logp", logp.ToString("R", CultureInfo.InvariantCulture),
            "--ref-logp", refLogp.ToString("R", CultureInfo.InvariantCulture), "--json"], null);
    }

    private static (JsonObject, string[], string?) LossCase(Rng rng)
    {
        int outputs = rng.NextInt(2, 5);
        float epsilon = new[] { 0.1f, 0.2f, 0.3f }[rng.NextInt(3)];
        float epsilonHigh = rng.NextInt(2) == 0 ? epsilon : epsilon + 0.08f;
        float beta = new[] { 0f, 0.04f, 0.1f }[rng.NextInt(3)];
        bool withReference = beta != 0 || rng.NextInt(2) == 0;
        double[] kinks = [Math.Log(1 - epsilon), Math.Log(1 + epsilonHigh)];
        var logProbs = new float[outputs][]; var old = new float[outputs][]; var reference = new float[outputs][];
        for (int i = 0; i < outputs; i++)
        {
            int length = rng.NextInt(1, 6);
            logProbs[i] = new float[length]; old[i] = new float[length]; reference[i] = new float[length];
            for (int t = 0; t < length; t++)
            {
                logProbs[i][t] = MathF.Round(-0.05f - 3 * rng.NextFloat(), 4);
                float logRatio = 0.4f * rng.NextGaussian();
                // float32 and float64 must not land on different sides of a clip boundary.
                while (kinks.Any(kink => Math.Abs(logRatio - kink) < 1e-3)) logRatio += 2e-3f;
                old[i][t] = MathF.Round(logProbs[i][t] - logRatio, 4);
                reference[i][t] = MathF.Round(logProbs[i][t] + 0.3f * rng.NextGaussian(), 4);
            }
        }
        var lossCase = new Dictionary<string, object>
        {
            ["logProbs"] = logProbs, ["oldLogProbs"] = old,
            ["advantages"] = Enumerable.Range(0, outputs).Select(_ => rng.NextInt(6) == 0 ? 0f : MathF.Round(rng.NextGaussian(), 4)).ToArray(),
            ["epsilon"] = epsilon, ["epsilonHigh"] = epsilonHigh, ["beta"] = beta,
            ["aggregation"] = new[] { "sequence", "token", "constant" }[rng.NextInt(3)],
            ["maxTokens"] = logProbs.Max(l => l.Length) + rng.NextInt(0, 3),
            ["kl"] = new[] { "k1", "k2", "k3" }[rng.NextInt(3)],
        };
        if (withReference) lossCase["refLogProbs"] = reference;
        string json = JsonSerializer.Serialize(lossCase);
        string path = Path.Combine(Path.GetTempPath(), $"grpo-loss-case-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return (new JsonObject { ["kind"] = "loss", ["case"] = JsonNode.Parse(json) }, ["loss", "--input", path, "--json"], path);
    }

    private static JsonArray RunPython(JsonArray cases)
    {
        string script = FindScript();
        var start = new ProcessStartInfo("python3", [script])
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        Process process;
        try { process = Process.Start(start)!; }
        catch (Win32Exception e)
        {
            throw new Xunit.Sdk.XunitException($"python3 is needed to run the independent reference {script} (standard library only), and could not be started: {e.Message}. Install Python 3 and put python3 on PATH.");
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            process.StandardInput.Write(cases.ToJsonString());
            process.StandardInput.Close();
            if (!process.WaitForExit(60_000)) { process.Kill(); throw new Xunit.Sdk.XunitException("grpo_reference.py did not finish in 60 s"); }
            Assert.True(process.ExitCode == 0, $"grpo_reference.py failed (exit {process.ExitCode}): {stderr.Result}");
            return JsonNode.Parse(stdout.Result)!.AsArray();
        }
    }

    /// <summary>The script lives in the source tree; walk up from the test binaries to find it.</summary>
    private static string FindScript()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory != null; directory = directory.Parent)
        {
            string candidate = Path.Combine(directory.FullName, "Grpo.Tests", "Reference", "grpo_reference.py");
            if (File.Exists(candidate)) return candidate;
        }
        throw new Xunit.Sdk.XunitException($"Grpo.Tests/Reference/grpo_reference.py not found above {AppContext.BaseDirectory}");
    }
}
