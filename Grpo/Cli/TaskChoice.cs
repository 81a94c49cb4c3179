// The `--task` choice shared by sft, grpo, eval and demo, and the tokenizer the task runs with.
//   arithmetic  the built-in word problems; the model folder's tokenizer when it has one, else the
//               character tokenizer over the task's alphabet (what a fresh model gets).
//   gsm8k       GSM8K from --data: a folder with train.jsonl and test.jsonl (sft and grpo draw from
//               train, eval from test; training questions that are also test questions are dropped),
//               or one JSONL file (the training problems for sft and grpo, the held-out ones for eval).
//               It needs the tokenizer of a --model folder that has a tokenizer.json (a Hugging Face
//               model: free text is not in a character alphabet).
// With a ContextBudget, GSM8K problems that cannot fit the model's context are dropped (as verl's
// filter_overlong_prompts does) and the returned note says how many; none fitting is an error.
// Bad input is an ArgumentException with one line (CliErrors turns it into `error: ...`, exit 1).
// Tests: Grpo.Tests/Cli/CommandWiringTests.cs.
using Grpo.Tasks;

namespace Grpo.Cli;

/// <summary>What a command does with the task's problems: train on them, or evaluate on the held-out ones.</summary>
public enum TaskUse { Training, Evaluation }

/// <summary>A problem fits when its prompt (with BOS) followed by MaxNewTokens sampled tokens, or when
/// MaxNewTokens is null (SFT) by its worked solution and EOS, is at most ContextLength tokens.</summary>
public sealed record ContextBudget(int ContextLength, int? MaxNewTokens);

/// <summary>The task, the tokenizer to run it with, and a one-line note for the user (or null).</summary>
public sealed record TaskSetup(IRlTask Task, ITokenizer Tokenizer, string? Note);

public static class TaskChoice
{
    public static TaskSetup Create(string name, string? data, TaskUse use, ITokenizer? modelTokenizer, string? modelFolder,
        ContextBudget? budget = null, ArithmeticDifficulty difficulty = ArithmeticDifficulty.Easy)
    {
        switch (name.ToLowerInvariant())
        {
            case "arithmetic":
                return new(new ArithmeticTask(difficulty), modelTokenizer ?? new CharTokenizer(ArithmeticTask.Alphabet), null);
            case "gsm8k":
                if (data is null)
                    throw new ArgumentException("--task gsm8k needs --data: a folder with train.jsonl and test.jsonl, or one JSONL file of {\"question\", \"answer\"} lines");
                if (modelFolder is null)
                    throw new ArgumentException("--task gsm8k needs --model DIR: a Hugging Face model folder with a tokenizer.json (e.g. Qwen2.5-0.5B-Instruct)");
                if (modelTokenizer is not HfTokenizer)
                    throw new ArgumentException(modelTokenizer is null
                        ? $"--task gsm8k needs a tokenizer, and {modelFolder} has none: give a Hugging Face model folder with a tokenizer.json"
                        : $"--task gsm8k needs a tokenizer for free text, and {modelFolder} has a character tokenizer (the arithmetic task's): give a Hugging Face model folder with a tokenizer.json");
                return Gsm8kSetup(data, use, modelTokenizer, budget);
            default:
                throw new ArgumentException($"unknown task '{name}' (expected arithmetic or gsm8k)");
        }
    }

    private static TaskSetup Gsm8kSetup(string data, TaskUse use, ITokenizer tokenizer, ContextBudget? budget)
    {
        IReadOnlyList<Problem> training, test;
        if (Directory.Exists(data))
        {
            string trainPath = Path.Combine(data, "train.jsonl"), testPath = Path.Combine(data, "test.jsonl");
            string needed = use == TaskUse.Training ? trainPath : testPath;
            if (!File.Exists(needed)) throw new ArgumentException($"--data {data}: no {Path.GetFileName(needed)} in the folder");
            training = use == TaskUse.Training ? Gsm8k.Load(trainPath) : [];
            test = File.Exists(testPath) ? Gsm8k.Load(testPath) : [];
        }
        else if (File.Exists(data))
        {
            var problems = Gsm8k.Load(data);
            IReadOnlyList<Problem> none = [];
            (training, test) = use == TaskUse.Training ? (problems, none) : (none, problems);
        }
        else throw new ArgumentException($"--data {data}: no such file or folder");

        string? note = null;
        if (budget is not null)
        {
            var used = use == TaskUse.Training ? training : test;
            var fitting = used.Where(p => Fits(p, tokenizer, budget)).ToList();
            string what = use == TaskUse.Training ? "training" : "test";
            string room = budget.MaxNewTokens is { } newTokens ? $"prompt and {newTokens} new tokens" : "prompt and worked solution";
            if (fitting.Count == 0)
                throw new ArgumentException($"none of the {used.Count} gsm8k {what} problems fits: each one's {room} exceed the model's context of {budget.ContextLength} tokens");
            if (fitting.Count < used.Count)
                note = $"gsm8k: {used.Count - fitting.Count} of {used.Count} {what} problems left out: their {room} exceed the model's context of {budget.ContextLength} tokens";
            if (use == TaskUse.Training) training = fitting; else test = fitting;
        }
        return new(new Gsm8kTask(training, test), tokenizer, note);
    }

    private static bool Fits(Problem problem, ITokenizer tokenizer, ContextBudget budget)
    {
        int promptTokens = tokenizer.Encode(problem.Prompt, addBos: true).Length;
        int after = budget.MaxNewTokens ?? tokenizer.Encode(problem.Solution, addEos: true).Length;
        return promptTokens + after <= budget.ContextLength;
    }
}
