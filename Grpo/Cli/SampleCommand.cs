// `grpo sample --model DIR (--prompt "text" | --prompt-tokens 1,2,3) --max-new-tokens N [--temperature T]
//  [--top-k K] [--top-p P] [--min-p M] [--eos ID] [--seed S] [--device D] [--json]`: one completion from a
// model folder, ours or Hugging Face's (Model/ModelFolder.cs), through Sampling/Generator.
// --prompt is encoded with the folder's tokenizer (Model/TokenizerFiles.cs), BOS first when it has one,
// as the trainers encode prompts; --eos defaults to the tokenizer's EOS. Prints the completion's text
// and new tokens with their log-probs (temperature-1 log-softmax of the model, what GRPO records); with
// --json the last line is {"tokens": [...], "logProbs": [...], "text": ..., "finish": ..., "truncated": ...},
// "text" being the decoded completion (null for a folder without a tokenizer, which takes --prompt-tokens only).
// Bad input (unknown folder, both or neither prompt option, token outside the vocabulary, prompt past
// the context, --device cuda): one line on stderr, exit 1. Tests: Grpo.Tests/Cli/SampleCommandTests.cs,
// CommandWiringTests.cs.
using Grpo.Compute;
using System.CommandLine;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using Grpo.Model;
using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Cli;

public static class SampleCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model folder: a checkpoint of ours or a Hugging Face folder", Required = true };
        var prompt = new Option<string?>("--prompt") { Description = "prompt text, encoded with the folder's tokenizer" };
        var promptTokens = new Option<string?>("--prompt-tokens") { Description = "prompt as token ids, e.g. 1,2,3 (for a folder without a tokenizer)" };
        var maxNewTokens = new Option<int>("--max-new-tokens") { Description = "most tokens to generate", DefaultValueFactory = _ => 32 };
        var temperature = new Option<float>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 1f };
        var topK = new Option<int>("--top-k") { Description = "keep the k most probable tokens (0 = off)", DefaultValueFactory = _ => 0 };
        var topP = new Option<float>("--top-p") { Description = "nucleus: smallest set of tokens with mass >= p (1 = off)", DefaultValueFactory = _ => 1f };
        var minP = new Option<float>("--min-p") { Description = "drop tokens below p * the most probable (0 = off)", DefaultValueFactory = _ => 0f };
        var eos = new Option<int?>("--eos") { Description = "token id that ends the completion (default: the tokenizer's EOS; none without a tokenizer)" };
        var seed = new Option<ulong>("--seed") { Description = "sampling seed", DefaultValueFactory = _ => 0UL };
        var device = DeviceOption.Create();
        var json = new Option<bool>("--json") { Description = "end with one JSON line: tokens, logProbs, text, finish, truncated" };
        var command = new Command("sample", "Sample one completion from a model folder (text or token ids in), with each token's log-prob")
            { model, prompt, promptTokens, maxNewTokens, temperature, topK, topP, minP, eos, seed, device, json };
        command.SetAction(parse => CliErrors.Run(parse, () =>
        {
            var onDevice = DeviceOption.OpenForRun(parse.GetValue(device)!);
            return Run(onDevice, parse.GetValue(model)!, parse.GetValue(prompt), parse.GetValue(promptTokens), parse.GetValue(maxNewTokens),
                new SamplerOptions(parse.GetValue(temperature), parse.GetValue(topK), parse.GetValue(topP), parse.GetValue(minP)),
                parse.GetValue(eos), parse.GetValue(seed), parse.GetValue(json), parse.InvocationConfiguration.Output);
        }));
        return command;
    }

    /// <summary>Samples and prints; bad input is an ArgumentException or ModelFormatException with one line.</summary>
    private static int Run(Device device, string modelFolder, string? promptText, string? promptTokens, int maxNewTokens,
        SamplerOptions sampler, int? eos, ulong seed, bool json, TextWriter output)
    {
        if ((promptText is null) == (promptTokens is null)) throw new ArgumentException("give exactly one of --prompt or --prompt-tokens");
        if (!Directory.Exists(modelFolder)) throw new ArgumentException($"model folder '{modelFolder}' not found");
        int[] prompt = [];
        if (promptTokens is not null && !TryParseTokens(promptTokens, out prompt, out var parseError)) throw new ArgumentException(parseError);
        if (maxNewTokens <= 0) throw new ArgumentException($"--max-new-tokens must be positive, got {maxNewTokens}");
        sampler.Validate();

        var (transformer, tokenizer) = ModelFolder.Load(modelFolder);
        if (promptText is not null)
        {
            if (tokenizer is null)
                throw new ArgumentException($"{modelFolder} has no tokenizer (tokenizer.json or char_tokenizer.json): give the prompt as --prompt-tokens 1,2,3");
            prompt = tokenizer.Encode(promptText, addBos: true);
            if (prompt.Length == 0) throw new ArgumentException("--prompt is empty");
        }
        var config = transformer.Config;
        foreach (int token in prompt)
            if (token < 0 || token >= config.VocabSize)
                throw new ArgumentException($"prompt token {token} is outside the vocabulary [0, {config.VocabSize})");
        eos ??= tokenizer?.Eos;
        if (eos is { } eosToken && (eosToken < 0 || eosToken >= config.VocabSize))
            throw new ArgumentException($"--eos {eosToken} is outside the vocabulary [0, {config.VocabSize})");
        if (prompt.Length >= config.MaxSeqLen)
            throw new ArgumentException($"the prompt has {prompt.Length} tokens; the model's context is {config.MaxSeqLen}");
        if (prompt.Length + maxNewTokens > config.MaxSeqLen)
            throw new ArgumentException($"prompt ({prompt.Length}) + max new tokens ({maxNewTokens}) exceed the model's context of {config.MaxSeqLen}; use --max-new-tokens {config.MaxSeqLen - prompt.Length} or less");

        var options = new GenerationOptions(maxNewTokens, sampler, eos);
        var result = Generator.Generate(transformer.To(device), [prompt], 1, options, new Rng(seed)).Single();
        string? text = tokenizer?.Decode(result.Tokens);

        if (!json)
        {
            if (text is not null) output.WriteLine($"text:      {JsonSerializer.Serialize(text, Readable)}");
            output.WriteLine($"prompt:    {string.Join(",", prompt)}");
            output.WriteLine($"tokens:    {string.Join(",", result.Tokens)}");
            output.WriteLine($"log-probs: {string.Join(" ", result.LogProbs.Select(l => l.ToString("F4", CultureInfo.InvariantCulture)))}");
            output.WriteLine($"finish:    {result.Finish} ({result.NewTokens} new tokens, sum of log-probs {result.LogProbs.Sum().ToString("F4", CultureInfo.InvariantCulture)})");
            return 0;
        }
        output.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["tokens"] = result.Tokens,
            ["logProbs"] = result.LogProbs,
            ["text"] = text,
            ["finish"] = result.Finish.ToString(),
            ["truncated"] = result.Truncated,
        }, Readable));
        return 0;
    }

    /// <summary>Text as a JSON string with newlines escaped but '<', '+' and non-ASCII left as they are.</summary>
    private static readonly JsonSerializerOptions Readable = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static bool TryParseTokens(string text, out int[] tokens, out string error)
    {
        var parts = text.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        tokens = new int[parts.Length];
        error = "";
        if (parts.Length == 0) { error = "--prompt-tokens is empty"; return false; }
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out tokens[i]))
            {
                error = $"--prompt-tokens: '{parts[i]}' is not a token id";
                return false;
            }
        return true;
    }
}
