using Grpo.Tasks;

namespace Grpo.Tests.Tasks;

public class AnswerExtractionTests
{
    [Theory]
    [InlineData("She makes 9 * 2 = 18 dollars.\n#### 18", "18")]
    [InlineData("#### 1,600", "1600")]
    [InlineData("#### -3", "-3")]
    [InlineData("12 * 50 = 600\n600 / 60 = 10\nAnswer: 10", "10")]
    [InlineData("answer: $1,200.50 in total", "1200.5")]
    [InlineData("**Answer:** 42", "42")]
    [InlineData("So the answer is 18.", "18")]
    [InlineData("The final answer is: $18.00.", "18")]
    [InlineData("The answer is \\$5", "5")]
    [InlineData("Thus we get \\boxed{42}.", "42")]
    [InlineData("Thus \\boxed{\\$1,000}", "1000")]
    [InlineData("\\boxed{50\\%}", "50")]
    [InlineData("Q: how many? A: 7 apples", "7")]
    [InlineData("She has 5 apples and 3 pears, 8 fruit in all.", "8")]
    [InlineData("It costs $18.00.", "18")]
    [InlineData("The rise is 50%.", "50")]
    [InlineData("16-3 is what she keeps", "3")]
    [InlineData("it went down to -7 degrees", "-7")]
    public void ExtractsEachFormat(string completion, string expected)
    {
        Assert.Equal(expected, AnswerExtraction.Extract(completion));
    }

    [Theory]
    // A more trusted marker wins over a less trusted one anywhere in the text.
    [InlineData("#### 7\nAnswer: 5", "7")]
    [InlineData("Answer: 5\nthen 9 more", "5")]
    [InlineData("The answer is 4. A: 6", "4")]
    // Within one marker the last occurrence wins (a model revising itself).
    [InlineData("Answer: 5\nNo wait. Answer: 6", "6")]
    // A marker followed by no number falls through to the next marker, then to the last number.
    [InlineData("The answer is unclear, maybe 12", "12")]
    public void MarkersAreTriedInOrderOfTrust(string completion, string expected)
    {
        Assert.Equal(expected, AnswerExtraction.Extract(completion));
    }

    [Theory]
    [InlineData("")]
    [InlineData("no number here")]
    [InlineData("Answer: none")]
    public void NoNumberIsNull(string completion)
    {
        Assert.Null(AnswerExtraction.Extract(completion));
    }

    [Theory]
    [InlineData("1,200.50", "1200.5")]
    [InlineData("$18", "18")]
    [InlineData("18.00", "18")]
    [InlineData("18.", "18")]
    [InlineData("-0", "0")]
    [InlineData("0.250", "0.25")]
    [InlineData(" 7 ", "7")]
    public void CanonicalForms(string number, string expected)
    {
        Assert.Equal(expected, AnswerExtraction.Canonical(number));
    }

    [Fact]
    public void NumbersCompareAsDecimals()
    {
        Assert.True(AnswerExtraction.SameNumber("18", "18.0"));
        Assert.True(AnswerExtraction.SameNumber("1,600", "1600"));
        Assert.False(AnswerExtraction.SameNumber("18", "19"));
        Assert.False(AnswerExtraction.SameNumber("18", null));
        Assert.False(AnswerExtraction.SameNumber("eighteen", "eighteen"));
        Assert.Null(AnswerExtraction.Canonical("1" + new string('0', 40)));  // beyond decimal's range
    }

    [Fact]
    public void StrictLineMarkerReadsOnlyTheFirstAnswerLine()
    {
        Assert.Equal("10", AnswerExtraction.AfterLineMarker("12 * 50 = 600\nAnswer: 10", "Answer:"));
        Assert.Equal("9", AnswerExtraction.AfterLineMarker("Answer: 9\nAnswer: 8", "Answer:"));
        Assert.Null(AnswerExtraction.AfterLineMarker("the Answer: 10", "Answer:"));  // not at a line's start
        Assert.Null(AnswerExtraction.AfterLineMarker("Answer: about 10", "Answer:"));
        Assert.Null(AnswerExtraction.AfterLineMarker("10", "Answer:"));
    }

    [SkippableFact]
    public void AllGsm8kTestAnswersExtractToTheirOwnFinalNumber()
    {
        Skip.If(TestData.Gsm8kDir is null, TestData.Gsm8kMissing);
        var lines = File.ReadAllLines(Path.Combine(TestData.Gsm8kDir!, "test.jsonl"));
        Assert.Equal(1319, lines.Length);
        foreach (var line in lines)
        {
            var answer = System.Text.Json.JsonDocument.Parse(line).RootElement.GetProperty("answer").GetString()!;
            // Read "#### N" independently of the extractor: the text after the marker, commas removed.
            var expected = answer[(answer.LastIndexOf("####") + 4)..].Trim().Replace(",", "");
            Assert.Equal(expected, AnswerExtraction.Extract(answer));
            Assert.Equal(expected, Gsm8k.ReferenceAnswer(answer));
            Assert.Equal(1.0, Gsm8k.Reward(expected, answer));
        }
    }
}
