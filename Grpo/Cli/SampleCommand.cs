// `grpo sample --model DIR (--prompt "text" | --prompt-tokens 1,2,3) --max-new-tokens N [--temperature T]
//  [--top-k K] [--top-p P] [--min-p M] [--eos ID] [--seed S] [--json]`: one completion from a checkpoint
// of ours (Model/Checkpoint.cs: config.json + model.safetensors), through Sampling/Generator.
// Prints the new tokens with their log-probs (temperature-1 log-softmax of the model, what GRPO
// records); with --json the last line is {"tokens": [...], "logProbs": [...], "text": ..., "finish": ...}.
// A checkpoint carries no tokenizer yet, so --prompt (text) is refused with a one-line reason and
// "text" is null; --prompt-tokens works for every checkpoint.
// Bad input (unknown folder, token outside the vocabulary, prompt past the context): one line on stderr, exit 1.
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Grpo.Model;
using Grpo.Sampling;

namespace Grpo.Cli;

public static class SampleCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint folder (config.json + model.safetensors)", Required = true };
        var prompt = new Option<string?>("--prompt") { Description = "prompt text (needs a tokenizer in the checkpoint)" };
        var promptTokens = new Option<string?>("--prompt-tokens") { Description = "prompt as token ids, e.g. 1,2,3" };
        var maxNewTokens = new Option<int>("--max-new-tokens") { Description = "most tokens to generate", DefaultValueFactory = _ => 32 };
        var temperature = new Option<float>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 1f };
        var topK = new Option<int>("--top-k") { Description = "keep the k most probable tokens (0 = off)", DefaultValueFactory = _ => 0 };
        var topP = new Option<float>("--top-p") { Description = "nucleus: smallest set of tokens with mass >= p (1 = off)", DefaultValueFactory = _ => 1f };
        var minP = new Option<float>("--min-p") { Description = "drop tokens below p * the most probable (0 = off)", DefaultValueFactory = _ => 0f };
        var eos = new Option<int?>("--eos") { Description = "token id that ends the completion (none by default)" };
        var seed = new Option<ulong>("--seed") { Description = "sampling seed", DefaultValueFactory = _ => 0UL };
        var json = new Option<bool>("--json") { Description = "end with one JSON line: tokens, logProbs, text, finish" };
        var command = new Command("sample", "Sample a completion from a checkpoint, with each token's log-prob")
            { model, prompt, promptTokens, maxNewTokens, temperature, topK, topP, minP, eos, seed, json };
        command.SetAction(parse =>
        {
            try
            {
                return Run(parse.GetValue(model)!, parse.GetValue(prompt), parse.GetValue(promptTokens), parse.GetValue(maxNewTokens),
                    new SamplerOptions(parse.GetValue(temperature), parse.GetValue(topK), parse.GetValue(topP), parse.GetValue(minP)),
                    parse.GetValue(eos), parse.GetValue(seed), parse.GetValue(json));
            }
            catch (Exception e) when (e is ArgumentException or ModelFormatException or IOException or UnauthorizedAccessException)
            {
                // An ArgumentException's Message ends in " (Parameter 'name')": the reason alone reads better.
                string reason = e is ArgumentException { ParamName: { } name } ? e.Message.Replace($" (Parameter '{name}')", "") : e.Message;
                return Fail(reason);
            }
        });
        return command;
    }

    private static int Run(string modelFolder, string? promptText, string? promptTokens, int maxNewTokens,
        SamplerOptions sampler, int? eos, ulong seed, bool json)
    {
        if ((promptText is null) == (promptTokens is null)) return Fail("give exactly one of --prompt or --prompt-tokens");
        if (promptText is not null)
            return Fail("this checkpoint format carries no tokenizer yet: give the prompt as --prompt-tokens 1,2,3");
        if (!Directory.Exists(modelFolder)) return Fail($"model folder '{modelFolder}' not found");
        if (!TryParseTokens(promptTokens!, out var prompt, out var parseError)) return Fail(parseError);
        if (maxNewTokens <= 0) return Fail($"--max-new-tokens must be positive, got {maxNewTokens}");
        sampler.Validate();

        var transformer = Checkpoint.LoadModel(modelFolder);
        var config = transformer.Config;
        foreach (int token in prompt)
            if (token < 0 || token >= config.VocabSize)
                return Fail($"prompt token {token} is outside the vocabulary [0, {config.VocabSize})");
        if (eos is { } eosToken && (eosToken < 0 || eosToken >= config.VocabSize))
            return Fail($"--eos {eosToken} is outside the vocabulary [0, {config.VocabSize})");
        if (prompt.Length >= config.MaxSeqLen)
            return Fail($"the prompt has {prompt.Length} tokens; the model's context is {config.MaxSeqLen}");
        if (prompt.Length + maxNewTokens > config.MaxSeqLen)
            return Fail($"prompt ({prompt.Length}) + max new tokens ({maxNewTokens}) exceed the model's context of {config.MaxSeqLen}; use --max-new-tokens {config.MaxSeqLen - prompt.Length} or less");

        var options = new GenerationOptions(maxNewTokens, sampler, eos);
        var result = Generator.Generate(transformer, [prompt], 1, options, new Rng(seed)).Single();

        if (!json)
        {
            Console.WriteLine($"prompt:    {string.Join(",", prompt)}");
            Console.WriteLine($"tokens:    {string.Join(",", result.Tokens)}");
            Console.WriteLine($"log-probs: {string.Join(" ", result.LogProbs.Select(l => l.ToString("F4", CultureInfo.InvariantCulture)))}");
            Console.WriteLine($"finish:    {result.Finish} ({result.NewTokens} new tokens, sum of log-probs {result.LogProbs.Sum():F4})");
            return 0;
        }
        Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["tokens"] = result.Tokens,
            ["logProbs"] = result.LogProbs,
            ["text"] = null,
            ["finish"] = result.Finish.ToString(),
            ["truncated"] = result.Truncated,
        }));
        return 0;
    }

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

    private static int Fail(string message)
    {
        Console.Error.WriteLine($"error: {message}");
        return 1;
    }
}
