// One way in for every command that takes --model DIR: a Hugging Face folder (LlamaForCausalLM or
// Qwen2ForCausalLM, one safetensors file or shards) or a checkpoint of ours (the same layout, as
// Checkpoint.SaveModel writes it), with its tokenizer when the folder has a tokenizer.json.
// Errors are one-line ModelFormatExceptions, the tokenizer's included, so a command catches one type.
// Tests: Grpo.Tests/Model/HfCheckpointTests.cs.
using Grpo.Tasks;

namespace Grpo.Model;

public static class ModelFolder
{
    /// <summary>The model and, when the folder has tokenizer.json, its tokenizer (else null).</summary>
    public static (Transformer Model, ITokenizer? Tokenizer) Load(string folder)
    {
        var model = HfCheckpoint.Load(folder);
        var tokenizer = LoadTokenizer(folder);
        if (tokenizer != null && tokenizer.VocabSize > model.Config.VocabSize)
            throw new ModelFormatException($"{folder}: the tokenizer has {tokenizer.VocabSize} tokens but the model only {model.Config.VocabSize}");
        return (model, tokenizer);
    }

    /// <summary>The folder's tokenizer, or null when it has no tokenizer.json.</summary>
    public static ITokenizer? LoadTokenizer(string folder)
    {
        if (!File.Exists(Path.Combine(folder, HfTokenizer.TokenizerFile))) return null;
        try { return HfTokenizer.Load(folder); }
        catch (TokenizerFormatException e) { throw new ModelFormatException(e.Message, e); }
    }
}
