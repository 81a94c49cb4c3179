// Reading a final answer out of free text, as the GSM8K verifier must: models write "#### 18",
// "Answer: 18", "The answer is $18.", "\boxed{18}", "A: 18", or just end on the number. The markers
// are tried in that order of trust; for each, the LAST occurrence that is followed by a number wins
// (a model that revises itself means its last word). When no marker is followed by a number, the
// last number in the text is the answer. Numbers may carry a sign, "$", thousands commas ("1,200"),
// decimals, and anything after them (units, "%", a full stop). Answers are compared as decimals:
// "18", "18.00" and "$18" are one answer; Canonical() gives the one string they share.
// Tests: Grpo.Tests/Tasks/AnswerExtractionTests.cs (each format by hand; all 1319 GSM8K test answers).
using System.Globalization;
using System.Text.RegularExpressions;

namespace Grpo.Tasks;

public static class AnswerExtraction
{
    // A number: a "-" that does not follow a word or digit ("16-3" is not minus three), an optional
    // "$", then digits with comma groups of three, or plain digits, then an optional decimal part.
    private const string Number = @"(?<![\w.])(?<sign>-)?\s*\\?\$?\s*(?<digits>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)";

    // Each marker is followed by optional "$", "*" (Markdown bold) or ":" before the number.
    private static readonly Regex[] Markers =
    [
        new(@"####[\s*:]*" + Number, RegexOptions.Compiled),
        new(@"\banswer\s*:[\s*]*" + Number, RegexOptions.Compiled | RegexOptions.IgnoreCase),
        new(@"\bthe\s+(?:final\s+)?answer\s+is[\s*:]*" + Number, RegexOptions.Compiled | RegexOptions.IgnoreCase),
        new(@"\\boxed\{[^{}0-9-]*" + Number + @"[^{}]*\}", RegexOptions.Compiled),
        new(@"(?<![A-Za-z])A:[\s*]*" + Number, RegexOptions.Compiled),
    ];

    private static readonly Regex AnyNumber = new(Number, RegexOptions.Compiled);

    /// <summary>The completion's final answer as a canonical number string, or null if it has no number.</summary>
    public static string? Extract(string completion)
    {
        foreach (var marker in Markers)
        {
            var matches = marker.Matches(completion);
            if (matches.Count > 0) return FromMatch(matches[^1]);
        }
        var numbers = AnyNumber.Matches(completion);
        return numbers.Count > 0 ? FromMatch(numbers[^1]) : null;
    }

    /// <summary>The number right after the first occurrence of <paramref name="marker"/> at the start of a
    /// line (e.g. "Answer:"), canonical, or null. The strict reading used by tasks with a fixed format.</summary>
    public static string? AfterLineMarker(string completion, string marker)
    {
        int start = 0;
        while (start <= completion.Length)
        {
            int end = completion.IndexOf('\n', start);
            if (end < 0) end = completion.Length;
            var line = completion.AsSpan(start, end - start).Trim();
            if (line.StartsWith(marker, StringComparison.Ordinal))
            {
                var match = AnyNumber.Match(line[marker.Length..].ToString());
                return match.Success && match.Index <= 2 ? FromMatch(match) : null;
            }
            start = end + 1;
        }
        return null;
    }

    /// <summary>"1,200.50", "$18", "-3", "18.00" -> "1200.5", "18", "-3", "18"; null when not a number
    /// (or beyond decimal's range).</summary>
    public static string? Canonical(string number)
    {
        var cleaned = number.Trim().Replace(",", "").Replace("$", "").Replace(" ", "");
        if (cleaned.EndsWith('.')) cleaned = cleaned[..^1];
        if (!decimal.TryParse(cleaned, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint,
                CultureInfo.InvariantCulture, out var value)) return null;
        var text = value.ToString(CultureInfo.InvariantCulture);
        if (text.Contains('.')) text = text.TrimEnd('0').TrimEnd('.');
        return text == "-0" ? "0" : text;
    }

    /// <summary>True when both are numbers and equal as decimals ("18" and "18.0" are equal).</summary>
    public static bool SameNumber(string? a, string? b)
    {
        if (a is null || b is null) return false;
        var ca = Canonical(a);
        return ca is not null && ca == Canonical(b);
    }

    private static string? FromMatch(Match match) =>
        Canonical((match.Groups["sign"].Success ? "-" : "") + match.Groups["digits"].Value);
}
