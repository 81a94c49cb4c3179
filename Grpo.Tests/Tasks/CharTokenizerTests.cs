using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Tests.Tasks;

public class CharTokenizerTests
{
    private static readonly CharTokenizer Tokenizer = new(ArithmeticTask.Alphabet);

    [Fact]
    public void ArithmeticVocabularyFitsTheSmallModels()
    {
        // 3 specials + 8 symbols + 10 digits + ":=?" + 12 capitals + 26 letters = 62 <= 64.
        Assert.Equal(62, Tokenizer.VocabSize);
        Assert.True(Tokenizer.VocabSize <= 64);
    }

    [Fact]
    public void EncodesByHand()
    {
        // Alphabet starts " \n$*+": ' ' -> 3, '\n' -> 4, '$' -> 5, '*' -> 6, '+' -> 7.
        Assert.Equal([CharTokenizer.Bos, 3, 7, 4, CharTokenizer.Eos], Tokenizer.Encode(" +\n", addBos: true, addEos: true));
        Assert.Equal(" +\n", Tokenizer.Decode([CharTokenizer.Bos, 3, 7, 4, CharTokenizer.Eos, 5, 6]));
        Assert.Equal("", Tokenizer.Decode([CharTokenizer.Pad, CharTokenizer.Bos]));
    }

    [Property(MaxTest = 50)]
    public bool EveryProblemRoundTrips(ulong seed)
    {
        var problem = new ArithmeticTask().SampleTraining(new Rng(seed));
        var text = problem.Prompt + problem.Solution;
        var tokens = Tokenizer.Encode(text, addBos: true, addEos: true);
        return tokens.Length == text.Length + 2 && tokens.All(t => t >= 0 && t < Tokenizer.VocabSize) && Tokenizer.Decode(tokens) == text;
    }

    [Fact]
    public void UnknownCharacterIsAClearError()
    {
        var error = Assert.Throws<ArgumentException>(() => Tokenizer.Encode("Answer: 5!"));
        Assert.Equal("character '!' (U+0021) at index 9 is not in the tokenizer's alphabet", error.Message);
        Assert.Throws<ArgumentException>(() => Tokenizer.Id('Z'));
    }

    [Fact]
    public void BadIdsAndAlphabetsAreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.Decode([Tokenizer.VocabSize]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.Decode([-1]));
        Assert.Throws<ArgumentException>(() => new CharTokenizer("abca"));
        Assert.Throws<ArgumentException>(() => new CharTokenizer(""));
    }
}
