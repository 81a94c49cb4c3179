// Reads a Hugging Face tokenizer.json of the byte-level BPE kind (GPT-2, Qwen2, Llama 3) into the
// options of Microsoft.ML.Tokenizers' BpeTokenizer: what that library cannot do is read this file.
//
//   model          {"type": "BPE", "vocab": {token: id}, "merges": ["a b", ...] or [["a", "b"], ...]}
//   normalizer     null or NFC (Qwen2)                    -> the text is NFC-normalised before encoding
//   pre_tokenizer  ByteLevel {use_regex: true} (GPT-2's split regex), or Sequence [Split {Regex,
//                  Isolated}, ByteLevel {use_regex: false}] (Qwen2, Llama 3)   -> a RegexPreTokenizer
//   decoder        ByteLevel (or null)
//   added_tokens   [{id, content, special}]: matched in the raw text before anything else
// A malformed file is a TokenizerFormatException naming the file and what is wrong, in one line.
// Anything else (WordPiece, byte fallback, prefix spaces, another split rule) is refused with one line
// rather than encoded differently from transformers. Llama 3's ignore_merges (take a whole piece that is
// in the vocabulary as one token) is not applied: for a BPE vocabulary, whose every entry is built by
// merges, merging gives the same token except in contrived cases. The file's size is bounded before
// it is parsed. Tests: Grpo.Tests/Model/HfCheckpointTests.cs.
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Grpo.Tasks;

internal sealed record TokenizerJson(
    Dictionary<string, int> Vocabulary, List<string> Merges, string SplitPattern, bool Nfc,
    Dictionary<string, int> AddedTokens, HashSet<int> SpecialIds)
{
    /// <summary>Qwen2's tokenizer.json is about 7 MB and Llama 3's 9 MB; a file past this is not a tokenizer.</summary>
    public const long MaxBytes = 64L * 1024 * 1024;

    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public static TokenizerJson Read(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new TokenizerFormatException($"{path}: file not found");
        if (info.Length > MaxBytes) throw new TokenizerFormatException($"{path}: {info.Length} bytes is more than the {MaxBytes}-byte limit");
        try
        {
            var root = JsonNode.Parse(File.ReadAllBytes(path)) as JsonObject ?? throw new FormatException("not a JSON object");
            return Parse(root);
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException($"{path}: not valid JSON ({e.Message})", e);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException or OverflowException or KeyNotFoundException)
        {
            throw new TokenizerFormatException($"{path}: {e.Message}", e);
        }
    }

    private static TokenizerJson Parse(JsonObject root)
    {
        var model = root["model"] as JsonObject ?? throw new FormatException("no 'model' object");
        string type = model["type"]?.GetValue<string>() ?? "BPE";
        if (type != "BPE") throw new FormatException($"model type '{type}' is not supported (byte-level BPE only)");
        if (model["byte_fallback"]?.GetValue<bool>() == true) throw new FormatException("BPE with byte_fallback (SentencePiece style) is not supported");
        if (!string.IsNullOrEmpty(model["continuing_subword_prefix"]?.GetValue<string>()) || !string.IsNullOrEmpty(model["end_of_word_suffix"]?.GetValue<string>()))
            throw new FormatException("BPE with a subword prefix or end-of-word suffix is not supported");

        var vocabulary = new Dictionary<string, int>();
        foreach (var (token, id) in model["vocab"] as JsonObject ?? throw new FormatException("no 'model.vocab' object"))
            vocabulary[token] = CheckedId(id, token);
        var merges = new List<string>();
        foreach (var merge in model["merges"] as JsonArray ?? throw new FormatException("no 'model.merges' array"))
            merges.Add(merge switch
            {
                JsonValue text => text.GetValue<string>(),
                JsonArray { Count: 2 } pair when pair[0] is JsonValue first && pair[1] is JsonValue second   // not null
                    && !first.GetValue<string>().Contains(' ') && !second.GetValue<string>().Contains(' ')
                    => first.GetValue<string>() + " " + second.GetValue<string>(),
                _ => throw new FormatException($"merge {merge?.ToJsonString()} is not \"a b\" or [\"a\", \"b\"] of space-free tokens"),
            });

        var added = new Dictionary<string, int>();
        var specialIds = new HashSet<int>();
        foreach (var node in root["added_tokens"] as JsonArray ?? [])
        {
            var token = node as JsonObject ?? throw new FormatException("an added token is not an object");
            string content = token["content"]?.GetValue<string>() ?? throw new FormatException("an added token has no content");
            int id = CheckedId(token["id"], content);
            added[content] = id;
            if (token["special"]?.GetValue<bool>() == true) specialIds.Add(id);
        }

        return new TokenizerJson(vocabulary, merges, ReadSplitPattern(root["pre_tokenizer"]), ReadNfc(root["normalizer"]), added, specialIds);
    }

    private static int CheckedId(JsonNode? node, string token)
    {
        int id = node?.GetValue<int>() ?? throw new FormatException($"token '{token}' has no id");
        if (id < 0) throw new FormatException($"token '{token}' has a negative id {id}");
        return id;
    }

    private static bool ReadNfc(JsonNode? normalizer) => normalizer switch
    {
        null => false,
        JsonObject o when Type(o) == "NFC" => true,
        JsonObject o when Type(o) == "Sequence" && o["normalizers"] is JsonArray { Count: 0 } => false,
        JsonObject o when Type(o) == "Sequence" && o["normalizers"] is JsonArray { Count: 1 } list => ReadNfc(list[0]),
        JsonObject o => throw new FormatException($"normalizer '{Type(o)}' is not supported (none or NFC)"),
        _ => throw new FormatException("normalizer is not an object"),
    };

    /// <summary>The regular expression that splits text into pieces before BPE.</summary>
    private static string ReadSplitPattern(JsonNode? preTokenizer)
    {
        var o = preTokenizer as JsonObject ?? throw new FormatException("pre_tokenizer is missing (byte-level BPE needs ByteLevel)");
        if (Type(o) == "ByteLevel")
        {
            CheckByteLevel(o, useRegex: true);
            return Gpt2Pattern;
        }
        if (Type(o) == "Sequence" && o["pretokenizers"] is JsonArray { Count: 2 } steps
            && steps[0] is JsonObject split && Type(split) == "Split" && steps[1] is JsonObject byteLevel && Type(byteLevel) == "ByteLevel")
        {
            CheckByteLevel(byteLevel, useRegex: false);
            string behavior = split["behavior"]?.GetValue<string>() ?? "";
            if (behavior != "Isolated" || split["invert"]?.GetValue<bool>() == true)
                throw new FormatException($"pre_tokenizer Split with behavior '{behavior}' is not supported (Isolated, not inverted)");
            var pattern = split["pattern"] as JsonObject ?? throw new FormatException("pre_tokenizer Split has no pattern");
            string regex = pattern["Regex"]?.GetValue<string>() ?? Regex.Escape(pattern["String"]?.GetValue<string>()
                ?? throw new FormatException("pre_tokenizer Split pattern is neither Regex nor String"));
            _ = new Regex(regex); // a pattern .NET cannot read fails here, with the reason
            return regex;
        }
        throw new FormatException($"pre_tokenizer '{Type(o)}' is not supported (ByteLevel, or Split then ByteLevel)");
    }

    private static void CheckByteLevel(JsonObject byteLevel, bool useRegex)
    {
        if (byteLevel["add_prefix_space"]?.GetValue<bool>() == true) throw new FormatException("ByteLevel add_prefix_space is not supported");
        if ((byteLevel["use_regex"]?.GetValue<bool>() ?? true) != useRegex)
            throw new FormatException($"ByteLevel use_regex {!useRegex} is not supported here");
    }

    private static string Type(JsonObject o) => o["type"]?.GetValue<string>() ?? "(no type)";

    /// <summary>Microsoft.ML.Tokenizers' byte-level BPE over this vocabulary, split rule and added tokens.</summary>
    public BpeTokenizer CreateBpe()
    {
        var preTokenizer = new RegexPreTokenizer(new Regex(SplitPattern, RegexOptions.Compiled), AddedTokens);
        var options = new BpeOptions(Vocabulary)
        {
            Merges = Merges,
            SpecialTokens = AddedTokens,
            PreTokenizer = preTokenizer,
            ByteLevel = true,
        };
        return BpeTokenizer.Create(options);
    }
}
