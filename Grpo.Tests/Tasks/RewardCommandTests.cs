using Grpo.Cli;

namespace Grpo.Tests.Tasks;

public class RewardCommandTests
{
    private static (int Code, string Output, string Error) Run(string task, string input, bool json = true)
    {
        var (output, error) = (new StringWriter(), new StringWriter());
        int code = RewardCommand.Run(task, new StringReader(input), "pairs.jsonl", json, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void ScoresEachLineOfAGsm8kFile()
    {
        var input = """
            {"question": "How much?", "answer": "9 * 2 = <<9*2=18>>18\n#### 18", "completion": "She makes $18.00."}
            {"answer": "1,600", "completion": "The answer is 1600"}
            {"answer": 7, "completion": "#### 8"}
            """;
        var (code, output, error) = Run("gsm8k", input);
        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.Equal(["{\"reward\":1}", "{\"reward\":1}", "{\"reward\":0}"], output.TrimEnd().Split('\n'));
    }

    [Fact]
    public void ArithmeticTaskIsStrictAboutTheAnswerLine()
    {
        var input = "{\"answer\": \"10\", \"completion\": \"12 * 50 = 600\\n600 / 60 = 10\\nAnswer: 10\"}\n"
                  + "{\"answer\": \"10\", \"completion\": \"it is 10\"}\n";
        var (code, output, _) = Run("arithmetic", input);
        Assert.Equal(0, code);
        Assert.Equal(["{\"reward\":1}", "{\"reward\":0}"], output.TrimEnd().Split('\n'));
    }

    [Fact]
    public void ReadableOutputShowsWhatWasExtracted()
    {
        var (_, output, _) = Run("gsm8k", "{\"answer\": \"18\", \"completion\": \"about 17\"}\n", json: false);
        Assert.Equal("line 1: reward 0 (reference 18, extracted 17)", output.TrimEnd());
    }

    [Theory]
    [InlineData("{\"answer\": \"1\", \"completion\": \"1\"}\n{\"answer\": \"1\"\n", "error: pairs.jsonl line 2: not valid JSON")]
    [InlineData("{\"answer\": \"1\", \"completion\": \"1\"}\n{\"answer\": \"1\"}\n", "error: pairs.jsonl line 2: missing field \"completion\"")]
    [InlineData("{\"answer\": \"ten\", \"completion\": \"1\"}\n", "error: pairs.jsonl line 1: \"answer\" is not a number")]
    [InlineData("", "error: pairs.jsonl: empty")]
    public void BadInputIsOneErrorLineAndExitCodeOne(string input, string expectedStart)
    {
        var (code, output, error) = Run("gsm8k", input);
        Assert.Equal(1, code);
        Assert.Equal("", output);  // nothing half-printed
        Assert.StartsWith(expectedStart, error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    [Fact]
    public void UnknownTaskIsRefused()
    {
        var (code, _, error) = Run("math", "{}");
        Assert.Equal(1, code);
        Assert.Equal("error: unknown task 'math' (expected gsm8k or arithmetic)", error.TrimEnd());
    }
}
