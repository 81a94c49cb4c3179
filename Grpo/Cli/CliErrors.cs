// The one place where a command's errors become what a user sees: a one-line `error: ...` on stderr
// and exit code 1, never a stack trace, for every failure caused by input (bad options, files, data),
// and for a training run that stops itself (TrainingStoppedException: non-finite steps in a row).
using Grpo.Compute;
using Grpo.Model;
using Grpo.Tasks;

namespace Grpo.Cli;

public static class CliErrors
{
    public static int Run(Func<int> action)
    {
        try { return action(); }
        catch (Exception e) when (e is ArgumentException or ModelFormatException or TaskDataException or IOException
            or UnauthorizedAccessException or DeviceUnavailableException or InvalidDataException or System.Text.Json.JsonException or TrainingStoppedException)
        {
            Console.Error.WriteLine("error: " + e.Message.ReplaceLineEndings(" "));
            return 1;
        }
    }
}
