// A character tokenizer: one token per character of a fixed alphabet, after three special tokens
// (PAD = 0, BOS = 1, EOS = 2). For the built-in task, `new CharTokenizer(ArithmeticTask.Alphabet)`
// has 62 tokens, within the 64 of the CpuBench/Small model presets. A character outside the
// alphabet is an error that names it; nothing is silently dropped or mapped to an "unknown".
// Implements ITokenizer (the consts serve code that knows it has a CharTokenizer).
// Tests: Grpo.Tests/Tasks/CharTokenizerTests.cs.
namespace Grpo.Tasks;

public sealed class CharTokenizer : ITokenizer
{
    public const int Pad = 0, Bos = 1, Eos = 2;
    private const int SpecialCount = 3;

    private readonly Dictionary<char, int> ids = [];

    /// <summary>A tokenizer over the characters of <paramref name="alphabet"/>, in its order (ids 3, 4, ...).</summary>
    public CharTokenizer(string alphabet)
    {
        if (alphabet.Length == 0) throw new ArgumentException("the alphabet is empty", nameof(alphabet));
        foreach (char c in alphabet)
            if (!ids.TryAdd(c, SpecialCount + ids.Count))
                throw new ArgumentException($"the alphabet repeats {Describe(c)}", nameof(alphabet));
        Alphabet = alphabet;
    }

    public string Alphabet { get; }

    int ITokenizer.Pad => Pad;
    int? ITokenizer.Bos => Bos;
    int ITokenizer.Eos => Eos;

    public int VocabSize => SpecialCount + Alphabet.Length;

    /// <summary>The token of one character; ArgumentException when it is not in the alphabet.</summary>
    public int Id(char c) => ids.TryGetValue(c, out int id) ? id
        : throw new ArgumentException($"{Describe(c)} is not in the tokenizer's alphabet");

    public int[] Encode(string text, bool addBos = false, bool addEos = false)
    {
        var tokens = new int[text.Length + (addBos ? 1 : 0) + (addEos ? 1 : 0)];
        int position = 0;
        if (addBos) tokens[position++] = Bos;
        for (int i = 0; i < text.Length; i++)
        {
            if (!ids.TryGetValue(text[i], out int id))
                throw new ArgumentException($"{Describe(text[i])} at index {i} is not in the tokenizer's alphabet");
            tokens[position++] = id;
        }
        if (addEos) tokens[position] = Eos;
        return tokens;
    }

    /// <summary>The text of <paramref name="tokens"/>: PAD and BOS are skipped and decoding stops at
    /// the first EOS (what a sampled completion means). ArgumentOutOfRangeException for an id outside the vocabulary.</summary>
    public string Decode(IEnumerable<int> tokens)
    {
        var text = new System.Text.StringBuilder();
        foreach (int token in tokens)
        {
            if (token == Eos) break;
            if (token is Pad or Bos) continue;
            if (token < 0 || token >= VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token {token} is outside the vocabulary of {VocabSize}");
            text.Append(Alphabet[token - SpecialCount]);
        }
        return text.ToString();
    }

    private static string Describe(char c) => $"character '{(char.IsControl(c) ? ' ' : c)}' (U+{(int)c:X4})";
}
