using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Tests.Tasks;

public class Gsm8kTests
{
    private static IReadOnlyList<Problem> Parse(string text) => Gsm8k.Parse(new StringReader(text), "data.jsonl");

    [Fact]
    public void ParsesALineIntoPromptReferenceAndCleanSolution()
    {
        var problem = Assert.Single(Parse(
            """{"question": "Janet has 16 eggs. She eats 3. How many are left?", "answer": "16 - 3 = <<16-3=13>>13\n#### 13"}""" + "\n\n"));
        Assert.Equal("Janet has 16 eggs. She eats 3. How many are left?\n", problem.Prompt);
        Assert.Equal("13", problem.Answer);
        Assert.Equal("16 - 3 = 13\n#### 13", problem.Solution);
    }

    [Fact]
    public void ReferenceWithCommasIsCanonical()
    {
        Assert.Equal("1600", Gsm8k.ReferenceAnswer("... = 1,600\n#### 1,600"));
        Assert.Null(Gsm8k.ReferenceAnswer("no marker 5"));
    }

    [Theory]
    [InlineData("{\"question\": \"q\", \"answer\": \"#### 1\"}\n{\"question\": \"q\", \"answer\": \"#### 2\"}\n{\"question\": \"q\",\n", "data.jsonl line 3: not valid JSON")]
    [InlineData("{\"question\": \"q\", \"answer\": \"#### 1\"}\n{\"question\": \"q\"}\n", "data.jsonl line 2: missing field \"answer\"")]
    [InlineData("{\"answer\": \"#### 1\"}\n", "data.jsonl line 1: missing field \"question\"")]
    [InlineData("{\"question\": 5, \"answer\": [1]}\n", "data.jsonl line 1: field \"answer\" must be a string")]
    [InlineData("{\"question\": \"q\", \"answer\": \"no final number\"}\n", "data.jsonl line 1: answer has no final line")]
    [InlineData("[1, 2]\n", "data.jsonl line 1: expected a JSON object")]
    [InlineData("", "data.jsonl: empty")]
    [InlineData("\n  \n", "data.jsonl: empty")]
    public void MalformedDataIsOneLineNamingTheLine(string text, string expectedStart)
    {
        var error = Assert.Throws<TaskDataException>(() => Parse(text));
        Assert.StartsWith(expectedStart, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void OverlongLineIsRefusedBeforeParsing()
    {
        var text = "{\"question\": \"q\", \"answer\": \"#### 1\"}\n{\"question\": \"" + new string('x', Jsonl.MaxLineChars + 10);
        var error = Assert.Throws<TaskDataException>(() => Parse(text));
        Assert.StartsWith($"data.jsonl line 2: longer than {Jsonl.MaxLineChars} characters", error.Message);
    }

    [Fact]
    public void MissingFileIsATaskDataError()
    {
        var error = Assert.Throws<TaskDataException>(() => Gsm8k.Load("/nonexistent/gsm8k.jsonl"));
        Assert.Equal("file not found: /nonexistent/gsm8k.jsonl", error.Message);
    }

    [Fact]
    public void TaskRewardsByNumberAndKeepsTestPromptsOutOfTraining()
    {
        var train = Parse("{\"question\": \"a\", \"answer\": \"#### 1\"}\n{\"question\": \"b\", \"answer\": \"#### 2\"}\n");
        var test = Parse("{\"question\": \"b\", \"answer\": \"#### 2\"}\n{\"question\": \"c\", \"answer\": \"#### 1,000\"}\n");
        var task = new Gsm8kTask(train, test);
        Assert.Equal(1, task.TrainingCount);  // "b" is in the test file
        var rng = new Rng(0);
        Assert.All(Enumerable.Range(0, 20), _ => Assert.Equal("a\n", task.SampleTraining(rng).Prompt));
        var held = task.HeldOut(5);
        Assert.Equal(2, held.Count);
        Assert.Equal(1.0, task.Reward(held[1], "so it is $1,000.00."));
        Assert.Equal(0.0, task.Reward(held[1], "The answer is 100"));
    }

    [SkippableFact]
    public void LoadsTheSharedFiles()
    {
        Skip.If(TestData.Gsm8kDir is null, TestData.Gsm8kMissing);
        var task = Gsm8kTask.FromDirectory(TestData.Gsm8kDir!);
        Assert.Equal(1319, task.HeldOut(5000).Count);
        Assert.InRange(task.TrainingCount, 7400, 7473);
        var first = task.HeldOut(1)[0];
        Assert.StartsWith("Janet", first.Prompt);
        Assert.Equal("18", first.Answer);
        Assert.Equal(1.0, task.Reward(first, first.Solution));
    }
}
