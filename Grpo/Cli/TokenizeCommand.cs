// `grpo tokenize --model DIR --text "..." [--add-bos] [--json]`: the token ids of a text under the
// tokenizer of a model folder (a Hugging Face tokenizer.json or our character tokenizer; Model/TokenizerFiles.cs). With --json the output is
// one line {"ids": [...]}; without, the ids and, under them, the text each decodes to.
// Bad input (no folder, no tokenizer, a malformed one): one line on stderr, exit 1.
// Tests: Grpo.Tests/Model/HfCheckpointTests.cs.
using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using Grpo.Model;
using Grpo.Tasks;

namespace Grpo.Cli;

public static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model folder with a tokenizer (a Hugging Face tokenizer.json, or a checkpoint of ours)", Required = true };
        var text = new Option<string>("--text") { Description = "the text to tokenize", Required = true };
        var addBos = new Option<bool>("--add-bos") { Description = "put the tokenizer's BOS first (if it has one)" };
        var json = new Option<bool>("--json") { Description = "print one JSON line: {\"ids\": [...]}" };
        var command = new Command("tokenize", "Token ids of a text under a model folder's tokenizer") { model, text, addBos, json };
        command.SetAction(parse => Run(parse.GetValue(model)!, parse.GetValue(text)!, parse.GetValue(addBos), parse.GetValue(json), Console.Out, Console.Error));
        return command;
    }

    public static int Run(string folder, string text, bool addBos, bool json, TextWriter output, TextWriter error)
    {
        try
        {
            if (!Directory.Exists(folder)) throw new ModelFormatException($"model folder '{folder}' not found");
            var tokenizer = ModelFolder.LoadTokenizer(folder)
                ?? throw new ModelFormatException($"{folder}: no tokenizer (tokenizer.json or char_tokenizer.json; without one a model takes token ids only)");
            int[] ids = tokenizer.Encode(text, addBos);
            if (json)
            {
                output.WriteLine(JsonSerializer.Serialize(new { ids }));
                return 0;
            }
            output.WriteLine($"{ids.Length} tokens: {string.Join(" ", ids)}");
            // Each token's text as a JSON string, so spaces and newlines show; '<' and non-ASCII left as they are.
            var readable = new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
            output.WriteLine(string.Join(" | ", ids.Select(id => JsonSerializer.Serialize(tokenizer is HfTokenizer hf ? hf.TokenText(id) : tokenizer.Decode([id]), readable))));
            return 0;
        }
        catch (ModelFormatException e)
        {
            error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }
}
