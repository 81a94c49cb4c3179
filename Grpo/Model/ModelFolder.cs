// One way in for every command that takes --model DIR: a Hugging Face folder (LlamaForCausalLM or
// Qwen2ForCausalLM, one safetensors file or shards) or a checkpoint of ours (the same layout, as
// Checkpoint.SaveModel writes it), with its tokenizer when the folder has one (TokenizerFiles: a
// Hugging Face tokenizer.json, or our char_tokenizer.json / trainer_state.json alphabet).
// Errors are one-line ModelFormatExceptions, the tokenizer's included, so a command catches one type.
// Tests: Grpo.Tests/Model/HfCheckpointTests.cs.
using Grpo.Tasks;

namespace Grpo.Model;

public static class ModelFolder
{
    /// <summary>The model and, when the folder has one, its tokenizer (else null).</summary>
    public static (Transformer Model, ITokenizer? Tokenizer) Load(string folder)
    {
        var model = HfCheckpoint.Load(folder);
        var tokenizer = LoadTokenizer(folder);
        if (tokenizer != null && tokenizer.VocabSize > model.Config.VocabSize)
            throw new ModelFormatException($"{folder}: the tokenizer has {tokenizer.VocabSize} tokens but the model only {model.Config.VocabSize}");
        return (model, tokenizer);
    }

    /// <summary>The folder's tokenizer, or null when it has none (see TokenizerFiles).</summary>
    public static ITokenizer? LoadTokenizer(string folder) => TokenizerFiles.Load(folder);
}
