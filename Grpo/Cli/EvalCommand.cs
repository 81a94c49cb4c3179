// `grpo eval --model DIR`: held-out accuracy of a model folder (a checkpoint of ours or a Hugging Face
// folder): greedy, pass@k and maj@k from n samples per problem (Rl/Evaluator.cs), as a table, or one
// JSON line with --json. --task gsm8k reads --data and uses the folder's tokenizer (Cli/TaskChoice.cs);
// problems whose prompt and --max-new-tokens exceed the model's context are left out, with a note.
using System.CommandLine;
using System.Text.Json;
using Grpo.Model;
using Grpo.Rl;
using Grpo.Sampling;
using Grpo.Tasks;
using Spectre.Console;

namespace Grpo.Cli;

public static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model folder: a checkpoint of ours or a Hugging Face folder", Required = true };
        var taskName = new Option<string>("--task") { Description = "arithmetic or gsm8k", DefaultValueFactory = _ => "arithmetic" };
        var data = new Option<string?>("--data") { Description = "for --task gsm8k: a folder with test.jsonl, or a JSONL file of held-out problems" };
        var problems = new Option<int>("--problems") { Description = "held-out problems", DefaultValueFactory = _ => 500 };
        var samples = new Option<int>("--samples") { Description = "samples per problem (n of pass@k)", DefaultValueFactory = _ => 16 };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "most tokens per completion", DefaultValueFactory = _ => 48 };
        var seed = new Option<ulong>("--seed") { Description = "sampling seed", DefaultValueFactory = _ => 7UL };
        var device = DeviceOption.Create();
        var json = new Option<bool>("--json") { Description = "one JSON line instead of the table" };
        var command = new Command("eval", "Evaluate a model on held-out problems: greedy accuracy, pass@k, maj@k")
            { model, taskName, data, problems, samples, maxNew, seed, device, json };
        command.SetAction(parse => CliErrors.Run(parse, () =>
        {
            var notes = parse.InvocationConfiguration.Error;
            var onDevice = DeviceOption.OpenForRun(parse.GetValue(device)!);
            int n = parse.GetValue(samples);
            if (n < 1) throw new ArgumentException($"--samples must be at least 1 (got {n})");
            if (parse.GetValue(maxNew) < 1) throw new ArgumentException($"--max-new-tokens must be at least 1 (got {parse.GetValue(maxNew)})");
            if (parse.GetValue(problems) < 1) throw new ArgumentException($"--problems must be at least 1 (got {parse.GetValue(problems)})");
            if (parse.GetValue(maxNew) < 1) throw new ArgumentException($"--max-new-tokens must be at least 1 (got {parse.GetValue(maxNew)})");
            string folder = parse.GetValue(model)!;
            var (transformer, modelTokenizer) = ModelFolder.Load(folder);
            var (task, tokenizer, note) = TaskChoice.Create(parse.GetValue(taskName)!, parse.GetValue(data), TaskUse.Evaluation, modelTokenizer, folder,
                new ContextBudget(transformer.Config.MaxSeqLen, parse.GetValue(maxNew)));
            if (note is not null) notes.WriteLine($"note: {note}");
            var ks = new[] { 1, 4, 16, 64 }.Where(k => k <= n).ToArray();
            var heldOut = task.HeldOut(parse.GetValue(problems));
            EvalResult? result = null;
            Progress.RunCounted("evaluating", progress =>
                result = Evaluator.Run(transformer.To(onDevice), task, tokenizer, heldOut, n, ks, parse.GetValue(maxNew), new Rng(parse.GetValue(seed)), progress));
            if (parse.GetValue(json)) parse.InvocationConfiguration.Output.WriteLine(JsonSerializer.Serialize(ToJson(result!)));
            else AnsiConsole.Write(Table(("model", result!)));
            return 0;
        }));
        return command;
    }

    public static Dictionary<string, double> ToJson(EvalResult result)
    {
        var json = new Dictionary<string, double> { ["greedy"] = Math.Round(result.Greedy, 4) };
        foreach (var (k, v) in result.PassAtK) json[$"pass@{k}"] = Math.Round(v, 4);
        foreach (var (k, v) in result.MajAtK) json[$"maj@{k}"] = Math.Round(v, 4);
        return json;
    }

    /// <summary>One column per result (e.g. before and after GRPO), one row per metric.</summary>
    public static Table Table(params (string Name, EvalResult Result)[] columns)
    {
        var table = new Table().AddColumn("held-out");
        foreach (var (name, _) in columns) table.AddColumn(new TableColumn(name).RightAligned());
        var keys = ToJson(columns[0].Result).Keys;
        foreach (var key in keys)
            table.AddRow(new[] { key }.Concat(columns.Select(c => $"{100 * ToJson(c.Result)[key]:F1}%")).ToArray());
        return table;
    }
}
