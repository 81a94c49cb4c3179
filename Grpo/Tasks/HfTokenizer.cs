// A Hugging Face tokenizer folder as an ITokenizer: tokenizer.json (byte-level BPE, read by
// TokenizerJson and run by Microsoft.ML.Tokenizers) and the special tokens named beside it.
//
// Encode: added tokens (<|im_start|>, <|endoftext|>, ...) are matched in the raw text first; the rest
// is NFC-normalised when the file asks, split by the pre-tokenizer's regex, mapped to byte-level
// characters (space -> 'Ġ') and merged by BPE. addBos/addEos put BOS/EOS around the ids (what a
// post-processor such as Llama 3's does for BOS).
// Decode: ordinary ids go back through the byte-level map to UTF-8; non-special added tokens are
// their text; special tokens are skipped; decoding stops at the first EOS (ITokenizer's contract).
// EOS is tokenizer_config.json's eos_token, else generation_config.json's eos_token_id (the first if
// a list), else config.json's; PAD is pad_token (else pad_token_id, else EOS); BOS is bos_token or
// absent. Tests: Grpo.Tests/Model/HfCheckpointTests.cs (ids made by the `tokenizers` library).
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace Grpo.Tasks;

/// <summary>A tokenizer file that cannot be read as it claims to be: the message is one line naming the file.</summary>
public sealed class TokenizerFormatException(string message, Exception? inner = null)
    : Exception(message.ReplaceLineEndings(" "), inner);

public sealed class HfTokenizer : ITokenizer
{
    public const string TokenizerFile = "tokenizer.json";
    private const long MaxConfigBytes = 16L * 1024 * 1024;

    private readonly BpeTokenizer bpe;
    private readonly bool nfc;
    private readonly Dictionary<int, string> addedById = [];
    private readonly HashSet<int> specialIds;
    private readonly HashSet<int> vocabularyIds;
    private readonly Dictionary<string, int> vocabulary, addedTokens;

    public int VocabSize { get; }
    public int Pad { get; }
    public int? Bos { get; }
    public int Eos { get; }
    /// <summary>The folder the tokenizer was read from (a checkpoint saved from it copies its files).</summary>
    public string Folder { get; }

    private HfTokenizer(TokenizerJson file, string folder)
    {
        Folder = folder;
        bpe = file.CreateBpe();
        nfc = file.Nfc;
        vocabulary = file.Vocabulary;
        addedTokens = file.AddedTokens;
        foreach (var (content, id) in file.AddedTokens) addedById[id] = content;
        specialIds = file.SpecialIds;
        vocabularyIds = [.. file.Vocabulary.Values];
        VocabSize = Math.Max(vocabularyIds.Count == 0 ? 0 : vocabularyIds.Max(), addedById.Count == 0 ? -1 : addedById.Keys.Max()) + 1;

        var tokenizerConfig = ReadJson(Path.Combine(folder, "tokenizer_config.json"));
        var generationConfig = ReadJson(Path.Combine(folder, "generation_config.json"));
        var modelConfig = ReadJson(Path.Combine(folder, "config.json"));
        Eos = TokenNamed(tokenizerConfig, "eos_token") ?? FirstId(generationConfig, "eos_token_id") ?? FirstId(modelConfig, "eos_token_id")
            ?? throw new TokenizerFormatException($"{folder}: no EOS token (eos_token in tokenizer_config.json, or eos_token_id in generation_config.json or config.json)");
        Pad = TokenNamed(tokenizerConfig, "pad_token") ?? FirstId(generationConfig, "pad_token_id") ?? FirstId(modelConfig, "pad_token_id") ?? Eos;
        Bos = TokenNamed(tokenizerConfig, "bos_token");
        foreach (var (name, id) in new[] { ("EOS", Eos), ("PAD", Pad), ("BOS", Bos ?? 0) })
            if (id < 0 || id >= VocabSize) throw new TokenizerFormatException($"{folder}: {name} id {id} is outside the tokenizer's vocabulary of {VocabSize}");
    }

    /// <summary>The tokenizer of a model folder; TokenizerFormatException (one line) when tokenizer.json or a config is malformed.</summary>
    public static HfTokenizer Load(string folder)
    {
        string path = Path.Combine(folder, TokenizerFile);
        var file = TokenizerJson.Read(path);
        try { return new HfTokenizer(file, folder); }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException or KeyNotFoundException)
        {
            // Microsoft.ML.Tokenizers checks the vocabulary against the merges (a merge naming no token, say).
            throw new TokenizerFormatException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>The id of a token given as its text: an added token, or a vocabulary entry (in byte-level form); null if neither.</summary>
    public int? TokenId(string token) =>
        addedTokens.TryGetValue(token, out int id) || vocabulary.TryGetValue(token, out id) ? id : null;

    /// <summary>One token as text for display: an added token's content (special ones too), else its decoded bytes.</summary>
    public string TokenText(int id) => addedById.TryGetValue(id, out string? content) ? content : Decode([id]);

    public int[] Encode(string text, bool addBos = false, bool addEos = false)
    {
        if (nfc) text = text.Normalize(NormalizationForm.FormC);
        var ids = new List<int>();
        if (addBos && Bos is int bos) ids.Add(bos);
        ids.AddRange(bpe.EncodeToIds(text));
        if (addEos) ids.Add(Eos);
        return [.. ids];
    }

    public string Decode(IEnumerable<int> tokens)
    {
        var text = new StringBuilder();
        var run = new List<int>();
        void Flush()
        {
            if (run.Count > 0) text.Append(bpe.Decode(run, considerSpecialTokens: false));
            run.Clear();
        }
        foreach (int token in tokens)
        {
            if (token < 0 || token >= VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token {token} is outside the vocabulary of {VocabSize}");
            if (token == Eos) break;
            if (addedById.TryGetValue(token, out string? content))
            {
                Flush();
                if (!specialIds.Contains(token)) text.Append(content);
            }
            else if (vocabularyIds.Contains(token)) run.Add(token);
        }
        Flush();
        return text.ToString();
    }

    private int? TokenNamed(JsonObject? config, string key) => config?[key] switch
    {
        null => null,
        JsonValue value when value.TryGetValue(out string? content) => TokenId(content)
            ?? throw new TokenizerFormatException($"tokenizer_config.json: {key} '{content}' is not a token of tokenizer.json"),
        JsonObject added when added["content"] is JsonValue value && value.TryGetValue(out string? content) => TokenId(content)
            ?? throw new TokenizerFormatException($"tokenizer_config.json: {key} '{content}' is not a token of tokenizer.json"),
        var other => throw new TokenizerFormatException($"tokenizer_config.json: {key} is {other.ToJsonString()}, not a token"),
    };

    private static int? FirstId(JsonObject? config, string key)
    {
        try
        {
            return config?[key] switch
            {
                null => null,
                JsonArray { Count: > 0 } list => list[0]!.GetValue<int>(),
                JsonArray => null,
                var value => value.GetValue<int>(),
            };
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new TokenizerFormatException($"{key} is {config![key]!.ToJsonString()}, not a token id", e);
        }
    }

    private static JsonObject? ReadJson(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) return null;
        if (info.Length > MaxConfigBytes) throw new TokenizerFormatException($"{path}: {info.Length} bytes is more than the {MaxConfigBytes}-byte limit");
        try { return JsonNode.Parse(File.ReadAllBytes(path)) as JsonObject ?? throw new TokenizerFormatException($"{path}: not a JSON object"); }
        catch (JsonException e) { throw new TokenizerFormatException($"{path}: not valid JSON ({e.Message})", e); }
    }
}
