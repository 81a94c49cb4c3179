// A model folder's tokenizer, in and out, so that a checkpoint carries what its token ids mean.
//
//   tokenizer.json         a Hugging Face tokenizer (with tokenizer_config.json, generation_config.json
//                          beside it): HfTokenizer. Saving a model trained with one copies these files
//                          from the folder it was read from.
//   char_tokenizer.json    ours: {"type": "char", "alphabet": "..."}: CharTokenizer (PAD 0, BOS 1, EOS 2,
//                          then the alphabet). Not named tokenizer.json, which transformers would read
//                          as its own format: our folders stay loadable by transformers (weights only).
//   trainer_state.json     a checkpoint written before char_tokenizer.json existed (the shipped warm
//                          start) names its alphabet in "extra": {"alphabet": "..."}; read as a fallback.
// Load looks in that order and returns null when the folder has none (then only token ids work).
// Errors are one-line ModelFormatExceptions naming the file.
// Tests: Grpo.Tests/Model/TokenizerFilesTests.cs.
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpo.Tasks;

namespace Grpo.Model;

public static class TokenizerFiles
{
    public const string CharTokenizerFile = "char_tokenizer.json";

    /// <summary>Writes the tokenizer into the folder: char_tokenizer.json for a CharTokenizer, the source
    /// folder's files for an HfTokenizer. The folder must already hold config.json (its token ids are kept in step).</summary>
    public static void Save(string folder, ITokenizer tokenizer)
    {
        switch (tokenizer)
        {
            case CharTokenizer chars:
                var json = new JsonObject { ["type"] = "char", ["alphabet"] = chars.Alphabet };
                SafeFile.WriteAllTextAtomic(Path.Combine(folder, CharTokenizerFile), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                break;
            case HfTokenizer hf:
                HfCheckpoint.CopyTokenizerFiles(hf.Folder, folder);
                break;
            default:
                throw new ArgumentException($"cannot save a {tokenizer.GetType().Name} in a checkpoint (only CharTokenizer and HfTokenizer)");
        }
    }

    /// <summary>The folder's tokenizer, or null when it has none.</summary>
    public static ITokenizer? Load(string folder)
    {
        if (File.Exists(Path.Combine(folder, HfTokenizer.TokenizerFile)))
        {
            try { return HfTokenizer.Load(folder); }
            catch (TokenizerFormatException e) { throw new ModelFormatException(e.Message, e); }
        }
        string charPath = Path.Combine(folder, CharTokenizerFile);
        if (File.Exists(charPath))
        {
            var root = HfCheckpoint.ParseObject(HfCheckpoint.ReadBoundedText(charPath, 1 << 20), charPath);
            if (StringField(root, "type", charPath) != "char")
                throw new ModelFormatException($"{charPath}: \"type\" is not \"char\"");
            return CharTokenizerOf(StringField(root, "alphabet", charPath), charPath);
        }
        string statePath = Path.Combine(folder, Checkpoint.StateFile);
        if (File.Exists(statePath))
        {
            var state = HfCheckpoint.ParseObject(SafeFile.ReadAllTextBounded(statePath, Checkpoint.MaxStateBytes), statePath);
            if (state["extra"] is JsonObject extra && extra["alphabet"] is JsonValue)
                return CharTokenizerOf(StringField(extra, "alphabet", statePath), statePath);
        }
        return null;
    }

    private static CharTokenizer CharTokenizerOf(string alphabet, string source)
    {
        try { return new CharTokenizer(alphabet); }
        catch (ArgumentException e) { throw new ModelFormatException($"{source}: {e.Message.Replace(" (Parameter 'alphabet')", "")}", e); }
    }

    private static string StringField(JsonObject json, string name, string source)
    {
        try { return json[name]?.GetValue<string>() ?? throw new ModelFormatException($"{source}: missing \"{name}\""); }
        catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException)
        {
            throw new ModelFormatException($"{source}: \"{name}\" is not a string", e);
        }
    }
}
