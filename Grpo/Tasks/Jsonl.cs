// Reading JSON Lines (one JSON object a line, the format of GSM8K and of `grpo reward`'s input)
// defensively: each line is bounded in length BEFORE it is held or parsed (a file with no newlines
// cannot fill memory), blank lines are skipped, and every failure is one line that names the file
// and line number, which the CLI prints as `error: ...`.
// Tests: Grpo.Tests/Tasks/Gsm8kTests.cs (malformed lines), RewardCommandTests.cs.
using System.Text;
using System.Text.Json;

namespace Grpo.Tasks;

/// <summary>Bad task data: the message is one line naming the source and line.</summary>
public sealed class TaskDataException(string message) : Exception(message);

public static class Jsonl
{
    /// <summary>Longest line accepted, in characters (GSM8K's longest is under 2,000).</summary>
    public const int MaxLineChars = 1 << 16;

    /// <summary>The non-blank lines of <paramref name="reader"/> parsed as JSON objects, with their
    /// 1-based line numbers. Throws TaskDataException for a long line, bad JSON, a non-object, or a
    /// source with no objects at all.</summary>
    public static IEnumerable<(int LineNumber, JsonElement Value)> ReadObjects(TextReader reader, string sourceName)
    {
        int lineNumber = 0, objects = 0;
        foreach (var line in BoundedLines(reader, sourceName))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonElement value;
            try
            {
                using var document = JsonDocument.Parse(line);
                value = document.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new TaskDataException($"{sourceName} line {lineNumber}: not valid JSON ({FirstLine(e.Message)})");
            }
            if (value.ValueKind != JsonValueKind.Object)
                throw new TaskDataException($"{sourceName} line {lineNumber}: expected a JSON object, got {value.ValueKind}");
            objects++;
            yield return (lineNumber, value);
        }
        if (objects == 0) throw new TaskDataException($"{sourceName}: empty (no JSON lines)");
    }

    /// <summary>The string field <paramref name="name"/>, or a TaskDataException naming the line. A number
    /// is accepted as its text (so {"answer": 18} works as well as {"answer": "18"}).</summary>
    public static string RequiredString(JsonElement value, string name, string sourceName, int lineNumber)
    {
        if (!value.TryGetProperty(name, out var field) || field.ValueKind == JsonValueKind.Null)
            throw new TaskDataException($"{sourceName} line {lineNumber}: missing field \"{name}\"");
        return field.ValueKind switch
        {
            JsonValueKind.String => field.GetString()!,
            JsonValueKind.Number => field.GetRawText(),
            _ => throw new TaskDataException($"{sourceName} line {lineNumber}: field \"{name}\" must be a string, got {field.ValueKind}"),
        };
    }

    private static IEnumerable<string> BoundedLines(TextReader reader, string sourceName)
    {
        var line = new StringBuilder();
        int lineNumber = 1;
        var buffer = new char[4096];
        int read;
        while ((read = reader.Read(buffer, 0, buffer.Length)) > 0)
        {
            for (int i = 0; i < read; i++)
            {
                char c = buffer[i];
                if (c == '\n')
                {
                    yield return line.ToString().TrimEnd('\r');
                    line.Clear();
                    lineNumber++;
                }
                else if (line.Length >= MaxLineChars)
                    throw new TaskDataException($"{sourceName} line {lineNumber}: longer than {MaxLineChars} characters");
                else line.Append(c);
            }
        }
        if (line.Length > 0) yield return line.ToString().TrimEnd('\r');
    }

    private static string FirstLine(string message) => message.Split('\n')[0].Trim();
}
