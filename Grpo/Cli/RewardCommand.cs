// `grpo reward --task gsm8k|arithmetic --input pairs.jsonl [--json]`: score completions with a task's
// verifier, so a user can see why a completion earned what it did before training on that reward.
// Each input line is {"answer": ..., "completion": ...} ("question" optional and unused): the answer
// is the reference number, or a whole GSM8K answer ending in "#### N". With --json the output is one
// {"reward": r} line per input line; without, one readable line each with the extracted answer.
// Bad input (a missing file, bad JSON, a missing field, an answer with no number): one line
// `error: ...` naming the line on stderr, nothing on stdout, exit code 1.
// Tests: Grpo.Tests/Tasks/RewardCommandTests.cs.
using System.CommandLine;
using System.Text.Json;
using Grpo.Tasks;

namespace Grpo.Cli;

public static class RewardCommand
{
    public static Command Create()
    {
        var task = new Option<string>("--task") { Description = "gsm8k or arithmetic", DefaultValueFactory = _ => "gsm8k" };
        var input = new Option<string?>("--input") { Description = "JSONL file of {\"answer\", \"completion\"} lines ('-' for stdin)" };
        var json = new Option<bool>("--json") { Description = "print only {\"reward\": r} lines" };
        var command = new Command("reward", "Score completions with a task's verifier: one reward per input line") { task, input, json };
        command.SetAction(parse =>
        {
            var path = parse.GetValue(input);
            if (string.IsNullOrEmpty(path)) return Fail("--input is required (a JSONL file, or '-' for stdin)");
            if (path != "-" && !File.Exists(path)) return Fail($"file not found: {path}");
            if (path == "-") return Run(parse.GetValue(task)!, Console.In, "stdin", parse.GetValue(json), Console.Out, Console.Error);
            using var reader = new StreamReader(path);
            return Run(parse.GetValue(task)!, reader, Path.GetFileName(path), parse.GetValue(json), Console.Out, Console.Error);
        });
        return command;
    }

    /// <summary>The command's work on any reader and writers (what the tests call). Returns the exit code.</summary>
    public static int Run(string taskName, TextReader input, string sourceName, bool json, TextWriter output, TextWriter error)
    {
        Func<string, string?> extract;
        Func<string, string, double> reward;
        switch (taskName)
        {
            case "gsm8k":
                extract = AnswerExtraction.Extract;
                reward = Gsm8k.Reward;
                break;
            case "arithmetic":
                var arithmetic = new ArithmeticTask();
                extract = arithmetic.ExtractAnswer;
                reward = (reference, completion) => arithmetic.Reward(new Problem("", reference, ""), completion);
                break;
            default:
                error.WriteLine($"error: unknown task '{taskName}' (expected gsm8k or arithmetic)");
                return 1;
        }

        var lines = new List<string>();
        try
        {
            foreach (var (lineNumber, value) in Jsonl.ReadObjects(input, sourceName))
            {
                var answer = Jsonl.RequiredString(value, "answer", sourceName, lineNumber);
                var completion = Jsonl.RequiredString(value, "completion", sourceName, lineNumber);
                var reference = (answer.Contains("####") ? Gsm8k.ReferenceAnswer(answer) : AnswerExtraction.Canonical(answer))
                    ?? throw new TaskDataException($"{sourceName} line {lineNumber}: \"answer\" is not a number nor ends in \"#### N\"");
                double r = reward(reference, completion);
                lines.Add(json
                    ? JsonSerializer.Serialize(new Dictionary<string, double> { ["reward"] = r })
                    : $"line {lineNumber}: reward {r} (reference {reference}, extracted {extract(completion) ?? "none"})");
            }
        }
        catch (TaskDataException e)
        {
            error.WriteLine($"error: {e.Message}");
            return 1;
        }
        foreach (var line in lines) output.WriteLine(line);
        return 0;
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine($"error: {message}");
        return 1;
    }
}
