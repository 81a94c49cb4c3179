// Progress bars for long work (Spectre.Console). The library below Cli/ reports progress through
// callbacks; this turns them into a bar with a description that the work updates.
// Spectre.Console allows one live display per process at a time, so commands run side by side in one
// process (as the tests run them) take turns through a lock instead of failing.
using Spectre.Console;

namespace Grpo.Cli;

public static class Progress
{
    private static readonly object OneDisplayAtATime = new();

    /// <summary>Runs work with a bar of `total` steps, `start` of them already done (a resumed run);
    /// work calls advance(description) once per step.</summary>
    public static void Run(string title, int total, Action<Action<string>> work, int start = 0)
    {
        lock (OneDisplayAtATime)
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var bar = context.AddTask(Markup.Escape(title), maxValue: Math.Max(1, total));
                bar.Value = start;
                work(description =>
                {
                    bar.Increment(1);
                    bar.Description = Markup.Escape($"{title}: {description}");
                });
                bar.StopTask();
            });
    }

    /// <summary>A bar for work that reports (done, total) itself.</summary>
    public static void RunCounted(string title, Action<Action<int, int>> work)
    {
        lock (OneDisplayAtATime)
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(context =>
            {
                var bar = context.AddTask(Markup.Escape(title), maxValue: 1);
                work((done, total) => { bar.MaxValue = Math.Max(1, total); bar.Value = done; });
                bar.Value = bar.MaxValue;
                bar.StopTask();
            });
    }
}
