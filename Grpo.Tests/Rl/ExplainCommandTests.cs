// Tests of Cli/ExplainCommand.cs run in-process (ExplainCommand.Run with captured writers): the
// paper's example as text and as JSON, the KL token, a loss case by hand, and that every kind of
// bad input gives exactly one `error:` line and exit code 1.
using System.Text.Json;
using Grpo.Cli;

namespace Grpo.Tests.Rl;

public class ExplainCommandTests
{
    internal static (int ExitCode, string Output, string Error) Explain(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exitCode = ExplainCommand.Run(["explain", .. args], output, error);
        return (exitCode, output.ToString(), error.ToString());
    }

    internal static JsonElement LastLineJson(string output) =>
        JsonDocument.Parse(output.TrimEnd().Split('\n')[^1]).RootElement;

    [Fact]
    public void IsRegistered() => Assert.Contains(Program.Commands(), command => command.Name == "explain");

    [Fact]
    public void PaperExampleTeaches()
    {
        var (exitCode, output, _) = Explain("advantages", "--rewards", "0,1,0,1", "--group-size", "4");
        Assert.Equal(0, exitCode);
        Assert.Contains("mean(r) = (0 + 1 + 0 + 1) / 4 = 0.5", output);
        Assert.Contains("A = (r - 0.5) / 0.5 = [-1, 1, -1, 1]", output);
    }

    [Fact]
    public void PaperExampleJson()
    {
        var (exitCode, output, error) = Explain("advantages", "--rewards", "0,1,0,1", "--group-size", "4", "--json");
        Assert.Equal((0, ""), (exitCode, error));
        Assert.Equal("{\"advantages\":[-1,1,-1,1]}", output.Trim());
    }

    [Fact]
    public void KlJson()
    {
        // k1 = 0.5, k2 = 0.125, k3 = e^-0.5 - 0.5 = 0.106531 (negative numbers as option values).
        var (exitCode, output, _) = Explain("kl", "--logp", "-1.0", "--ref-logp", "-1.5", "--json");
        Assert.Equal(0, exitCode);
        var json = LastLineJson(output);
        Assert.Equal(0.5, json.GetProperty("k1").GetDouble(), 12);
        Assert.Equal(0.125, json.GetProperty("k2").GetDouble(), 12);
        Assert.Equal(0.106531, json.GetProperty("k3").GetDouble(), 6);
        Assert.Contains("k3 = pi_ref/pi - log(pi_ref/pi) - 1  = 0.106531", Explain("kl", "--logp", "-1.0", "--ref-logp", "-1.5").Output);
    }

    [Fact]
    public void LossJsonByHand()
    {
        // Token aggregation, beta 0, output 1: one token with ratio e^0.3 = 1.349859 and A = 1 -> clipped at 1.2,
        // gradient 0; output 2: two tokens with ratio 1 and A = -1 -> terms 1, 1. Loss (-1.2 + 1 + 1) / 3 = 0.266667;
        // gradients: 0, then -(1 * -1) / 3 = 0.333333 each.
        string path = Path.GetTempFileName();
        File.WriteAllText(path, """
            {"logProbs": [[-0.7], [-1, -2]], "oldLogProbs": [[-1], [-1, -2]], "advantages": [1, -1],
             "epsilon": 0.2, "beta": 0, "aggregation": "token"}
            """);
        var (exitCode, output, error) = Explain("loss", "--input", path, "--json");
        Assert.True(exitCode == 0, error);
        var json = LastLineJson(output);
        Assert.Equal(0.266667, json.GetProperty("loss").GetDouble(), 5);
        var grad = json.GetProperty("gradLogProbs");
        Assert.Equal(0.0, grad[0][0].GetDouble(), 6);
        Assert.Equal(0.333333, grad[1][1].GetDouble(), 5);
        Assert.Contains("yes", Explain("loss", "--input", path).Output);
        File.Delete(path);
    }

    [Theory]
    [InlineData("advantages --rewards 0,x,1 --group-size 3", "'x' is not a finite number")]
    [InlineData("advantages --rewards 0,1,0 --group-size 2", "do not split into whole groups")]
    [InlineData("advantages --rewards 0,1 --group-size 2 --scale max", "unknown advantage scale 'max'")]
    [InlineData("advantages --rewards 0,1 --group-size 2 --std biased", "unknown std 'biased'")]
    [InlineData("advantages --rewards 0,1 --group-size two", "'two' is not a whole number")]
    [InlineData("advantages --rewards 0,1", "--group-size is required")]
    [InlineData("kl --logp abc --ref-logp -1", "'abc' is not a finite number")]
    [InlineData("kl --logp -1", "--ref-logp is required")]
    [InlineData("loss --input /no/such/case.json", "no such file")]
    public void BadInputIsOneErrorLine(string args, string message)
    {
        var (exitCode, output, error) = Explain(args.Split(' '));
        AssertOneErrorLine(exitCode, output, error, message);
    }

    [Theory]
    [InlineData("""{"logProbs": [[-1, -2]], "oldLogProbs": [[-1]], "advantages": [1], "beta": 0}""", "oldLogProbs[0] has 1 values but logProbs[0] has 2")]
    [InlineData("""{"logProbs": [[-1]], "oldLogProbs": [[-1]], "advantages": [1, 2], "beta": 0}""", "advantages has 2 outputs but logProbs has 1")]
    [InlineData("""{"logProbs": [[-1]], "oldLogProbs": [[-1]], "advantages": [1], "beta": 0, "aggregation": "mean"}""", "unknown aggregation 'mean'")]
    [InlineData("""{"logProbs": [[-1]], "oldLogProbs": [[-1]], "advantages": [1], "beta": 0, "aggregation": "constant"}""", "needs maxTokens")]
    [InlineData("""{"logProbs": [[-1]], "oldLogProbs": [[-1]], "advantages": [1]}""", "no refLogProbs")]
    [InlineData("""{"logProbs": [[-1, "a"]]}""", "could not be converted")]
    [InlineData("""{"logProbs": [[-1]], "oldLogProbs": [[-1]], "advantage": [1]}""", "'advantage' could not be mapped")]
    [InlineData("""{"logProbs": [[-1]""", "case.json")]
    public void BadLossCaseIsOneErrorLine(string caseJson, string message)
    {
        string directory = Directory.CreateTempSubdirectory().FullName;
        string path = Path.Combine(directory, "case.json");
        File.WriteAllText(path, caseJson);
        var (exitCode, output, error) = Explain("loss", "--input", path, "--json");
        Directory.Delete(directory, recursive: true);
        AssertOneErrorLine(exitCode, output, error, message);
    }

    private static void AssertOneErrorLine(int exitCode, string output, string error, string message)
    {
        Assert.Equal(1, exitCode);
        Assert.Equal("", output);
        var lines = error.TrimEnd().Split('\n');
        Assert.True(lines.Length == 1, $"expected one line, got: {error}");
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(message, lines[0]);
    }
}
