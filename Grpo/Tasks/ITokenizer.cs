// What the trainer and the command line need of a tokenizer: text to token ids and back, the
// vocabulary size and the special tokens. Implemented by CharTokenizer (the built-in task's
// alphabet) and HfTokenizer (a Hugging Face tokenizer.json: byte-level BPE).
// Decode gives what a sampled completion means: special tokens are skipped and decoding stops at
// the first EOS; an id outside [0, VocabSize) is an ArgumentOutOfRangeException naming it.
// Tests: Grpo.Tests/Tasks/CharTokenizerTests.cs, Grpo.Tests/Model/HfCheckpointTests.cs.
namespace Grpo.Tasks;

public interface ITokenizer
{
    /// <summary>Ids run over [0, VocabSize). A model's vocabulary may be larger (padded), never smaller.</summary>
    int VocabSize { get; }

    /// <summary>The token that fills a batch's empty places.</summary>
    int Pad { get; }

    /// <summary>The token put first when addBos is asked for; null when the tokenizer has none (Qwen2).</summary>
    int? Bos { get; }

    /// <summary>The token that ends a completion.</summary>
    int Eos { get; }

    int[] Encode(string text, bool addBos = false, bool addEos = false);

    string Decode(IEnumerable<int> tokens);
}
