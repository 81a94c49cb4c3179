// The `--task` choice shared by sft, grpo, eval and demo: the built-in arithmetic word problems
// (character tokenizer over the task's alphabet) or GSM8K from a JSONL file (`--data`).
using Grpo.Tasks;

namespace Grpo.Cli;

public static class TaskChoice
{
    public static (IRlTask Task, CharTokenizer Tokenizer) Create(string name, string? data, ArithmeticDifficulty difficulty = ArithmeticDifficulty.Easy)
    {
        switch (name.ToLowerInvariant())
        {
            case "arithmetic":
                return (new ArithmeticTask(difficulty), new CharTokenizer(ArithmeticTask.Alphabet));
            case "gsm8k":
                throw new ArgumentException("--task gsm8k needs a model with a byte-level tokenizer (--model DIR of a Hugging Face folder); the character models of this program cover the arithmetic task only");
            default:
                throw new ArgumentException($"unknown task '{name}' (expected arithmetic or gsm8k)");
        }
    }
}
