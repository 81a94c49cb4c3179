// The one place where a command's errors become what a user sees: a one-line `error: ...` on stderr
// and exit code 1, never a stack trace, for every failure caused by input (bad options, files, data),
// and for a training run that stops itself (TrainingStoppedException: non-finite steps in a row).
using System.CommandLine;
using Grpo.Compute;
using Grpo.Model;
using Grpo.Tasks;

namespace Grpo.Cli;

public static class CliErrors
{
    public static int Run(Func<int> action) => Run(Console.Error, action);

    /// <summary>As Run, with the error line going to the invocation's error writer.</summary>
    public static int Run(ParseResult parse, Func<int> action) => Run(parse.InvocationConfiguration.Error, action);

    private static int Run(TextWriter error, Func<int> action)
    {
        try { return action(); }
        catch (Exception e) when (e is ArgumentException or ModelFormatException or TaskDataException or IOException
            or UnauthorizedAccessException or DeviceUnavailableException or DeviceOutOfMemoryException or InvalidDataException or System.Text.Json.JsonException or TrainingStoppedException)
        {
            error.WriteLine("error: " + OneLine(e));
            return 1;
        }
    }

    /// <summary>The reason alone: an ArgumentException's Message ends in " (Parameter 'name')", which a user need not read.</summary>
    private static string OneLine(Exception e)
    {
        string message = e is ArgumentException { ParamName: { } name } ? e.Message.Replace($" (Parameter '{name}')", "") : e.Message;
        return message.ReplaceLineEndings(" ");
    }
}
