// The word-problem templates of the built-in arithmetic task, and the word lists they draw from.
// Easy (the default): one step on single-digit operands (+, -, *, exact division), two phrasings
// each, plus the two-step wage problem of DeepSeekMath's example ("Weng earns $12 an hour for
// babysitting ... 50 minutes"), which a 0.35M-parameter character model learns in minutes on a CPU.
// Hard: two-digit one-step problems and two-step ones (buy more, change from a note, share a total),
// plus the wage problem. Names, items, containers, colours and jobs come from long lists so that
// held-out problems are new strings, not copies of training ones. Words are short (names up to 4
// letters, items up to 8) so that every prompt and solution fits ArithmeticTask.MaxChars; names
// start with one of few capitals so that the alphabet stays small (ArithmeticTask.Alphabet).
// Worst cases, longest words and numbers (prompt + solution): wage 120 ("Jill earns $30 an hour
// babysitting ... 50 minutes"), share 118, buy-more and change 112, one-step problems at most 102.
// Tests: Grpo.Tests/Tasks/ArithmeticTaskTests.cs (every generated problem fits, solves, verifies).
using Grpo.Sampling;

namespace Grpo.Tasks;

/// <summary>A template fills in a question and the steps that answer it.</summary>
internal delegate (string Question, ArithmeticStep[] Steps) ArithmeticTemplate(Rng rng);

internal static class ArithmeticTemplates
{
    private static readonly string[] SheNames =
    [
        "Ann", "Amy", "Ava", "Ada", "Bea", "Beth", "Cara", "Cleo", "Dee", "Dora", "Hana", "Jo", "Joy",
        "Jen", "Jill", "Kay", "Kim", "Kate", "Lea", "Liz", "Lily", "Lola", "Mia", "Meg", "May", "Pam",
        "Pia", "Sue", "Sara", "Tia", "Tess", "Tara",
    ];

    private static readonly string[] HeNames =
    [
        "Abe", "Al", "Ben", "Bob", "Bo", "Cal", "Cy", "Dan", "Don", "Hal", "Hugo", "Jay", "Jim", "Jack",
        "Ken", "Kai", "Leo", "Lou", "Max", "Mo", "Pat", "Pete", "Sam", "Sid", "Tom", "Tim", "Ted", "Theo",
    ];

    private static readonly string[] Items =
    [
        "apples", "pens", "eggs", "books", "cards", "coins", "shells", "stamps", "cups", "hats", "kites",
        "balls", "rocks", "toys", "beads", "nuts", "plums", "pears", "limes", "socks", "mugs", "dolls",
        "gems", "keys", "figs", "buns", "pies", "cakes", "buttons", "crayons", "marbles", "stickers",
        "candles", "lemons", "peaches", "cookies", "bricks", "ribbons",
    ];

    private static readonly string[] Containers = ["bags", "boxes", "jars", "tins", "packs", "bowls", "baskets", "crates", "trays"];

    private static readonly string[] Colours = ["red", "blue", "green", "pink", "white", "black", "gold", "gray"];

    private static readonly string[] Jobs =
    [
        "babysitting", "baking", "gardening", "tutoring", "painting", "cleaning", "cooking", "sewing",
        "mowing", "typing", "knitting", "drawing", "dancing", "fishing", "filing", "packing", "singing",
    ];

    public static readonly ArithmeticTemplate[][] Easy =
    [
        [AddGets(1, 9), AddColours(1, 9)],
        [SubGivesAway(1, 9), SubLost(1, 9)],
        [MulContainers(1, 9, 1, 9), MulBuys(1, 9, 1, 9)],
        [DivShare(2, 9, 1, 9), DivPack(2, 9, 1, 9)],
        [Wage],
    ];

    public static readonly ArithmeticTemplate[][] Hard =
    [
        [AddGets(10, 99), AddColours(10, 99)],
        [SubGivesAway(20, 99), SubLost(20, 99)],
        [MulContainers(2, 9, 11, 25), MulBuys(2, 9, 11, 25)],
        [DivShare(2, 9, 11, 25), DivPack(2, 9, 11, 25)],
        [BuyMore], [Change], [ShareTwoColours], [Wage],
    ];

    private static ArithmeticTemplate AddGets(int low, int high) => rng =>
    {
        var (name, pronoun) = Person(rng); var items = Pick(rng, Items);
        int a = rng.NextInt(low, high), b = rng.NextInt(low, high);
        return ($"{name} has {a} {items}. {Cap(pronoun)} gets {b} more. How many {items} does {pronoun} have now?", [new(a, '+', b)]);
    };

    private static ArithmeticTemplate AddColours(int low, int high) => rng =>
    {
        var (name, pronoun) = Person(rng); var items = Pick(rng, Items);
        var (first, second) = TwoColours(rng);
        int a = rng.NextInt(low, high), b = rng.NextInt(low, high);
        return ($"{name} has {a} {first} {items} and {b} {second} {items}. How many {items} is that?", [new(a, '+', b)]);
    };

    private static ArithmeticTemplate SubGivesAway(int low, int high) => rng =>
    {
        var (name, pronoun) = Person(rng); var items = Pick(rng, Items);
        int a = rng.NextInt(low, high), b = rng.NextInt(Math.Min(low, a), a);
        return ($"{name} has {a} {items}. {Cap(pronoun)} gives away {b}. How many {items} are left?", [new(a, '-', b)]);
    };

    private static ArithmeticTemplate SubLost(int low, int high) => rng =>
    {
        var (name, pronoun) = Person(rng); var items = Pick(rng, Items);
        int a = rng.NextInt(low, high), b = rng.NextInt(Math.Min(low, a), a);
        return ($"{name} had {a} {items} and lost {b}. How many {items} does {pronoun} have left?", [new(a, '-', b)]);
    };

    private static ArithmeticTemplate MulContainers(int lowCount, int highCount, int lowEach, int highEach) => rng =>
    {
        var (name, pronoun) = Person(rng); var items = Pick(rng, Items); var containers = Pick(rng, Containers);
        int a = rng.NextInt(lowCount, highCount), b = rng.NextInt(lowEach, highEach);
        return ($"{name} has {a} {containers} with {b} {items} in each. How many {items} does {pronoun} have?", [new(a, '*', b)]);
    };

    private static ArithmeticTemplate MulBuys(int lowCount, int highCount, int lowEach, int highEach) => rng =>
    {
        var (name, pronoun) = Person(rng); var items = Pick(rng, Items); var containers = Pick(rng, Containers);
        int a = rng.NextInt(lowCount, highCount), b = rng.NextInt(lowEach, highEach);
        return ($"{name} buys {a} {containers} of {b} {items}. How many {items} does {pronoun} buy?", [new(a, '*', b)]);
    };

    private static ArithmeticTemplate DivShare(int lowDivisor, int highDivisor, int lowQuotient, int highQuotient) => rng =>
    {
        var (name, _) = Person(rng); var items = Pick(rng, Items);
        int divisor = rng.NextInt(lowDivisor, highDivisor), total = divisor * rng.NextInt(lowQuotient, highQuotient);
        return ($"{name} shares {total} {items} equally among {divisor} friends. How many does each get?", [new(total, '/', divisor)]);
    };

    private static ArithmeticTemplate DivPack(int lowDivisor, int highDivisor, int lowQuotient, int highQuotient) => rng =>
    {
        var (name, pronoun) = Person(rng); var items = Pick(rng, Items); var containers = Pick(rng, Containers);
        int perContainer = rng.NextInt(lowDivisor, highDivisor), total = perContainer * rng.NextInt(lowQuotient, highQuotient);
        return ($"{name} packs {total} {items} into {containers} of {perContainer}. How many {containers} does {pronoun} fill?",
            [new(total, '/', perContainer)]);
    };

    // DeepSeekMath's example: rate * minutes, then / 60. Minutes are drawn among those that make the
    // pay a whole number of dollars, so the two steps are "12 * 50 = 600" and "600 / 60 = 10".
    private static readonly (int Rate, int Minutes)[] WholeWages =
        [.. from rate in Enumerable.Range(6, 25) from minutes in Enumerable.Range(10, 41)
            where rate * minutes % 60 == 0 select (rate, minutes)];

    private static (string, ArithmeticStep[]) Wage(Rng rng)
    {
        var (name, pronoun) = Person(rng); var job = Pick(rng, Jobs);
        var (rate, minutes) = Pick(rng, WholeWages);
        return ($"{name} earns ${rate} an hour {job}. {Cap(pronoun)} works {minutes} minutes. How much is {pronoun} paid?",
            [new(rate, '*', minutes), new(rate * minutes, '/', 60)]);
    }

    private static (string, ArithmeticStep[]) BuyMore(Rng rng)
    {
        var (name, pronoun) = Person(rng); var items = Pick(rng, Items); var containers = Pick(rng, Containers);
        int start = rng.NextInt(10, 50), count = rng.NextInt(2, 9), each = rng.NextInt(2, 9);
        return ($"{name} has {start} {items}. {Cap(pronoun)} buys {count} {containers} of {each} more. How many does {pronoun} have?",
            [new(count, '*', each), new(start, '+', count * each)]);
    }

    private static (string, ArithmeticStep[]) Change(Rng rng)
    {
        var (name, pronoun) = Person(rng); var items = Pick(rng, Items);
        int count = rng.NextInt(2, 9), price = rng.NextInt(2, 9), cost = count * price;
        int note = new[] { 10, 20, 50, 100 }.First(n => n > cost);
        return ($"{name} buys {count} {items} at ${price} each and pays ${note}. How much change does {pronoun} get?",
            [new(count, '*', price), new(note, '-', cost)]);
    }

    private static (string, ArithmeticStep[]) ShareTwoColours(Rng rng)
    {
        var (name, _) = Person(rng); var items = Pick(rng, Items);
        var (first, second) = TwoColours(rng);
        int friends = rng.NextInt(2, 9), total = friends * rng.NextInt(2, 12);
        int a = rng.NextInt(1, total - 1), b = total - a;
        return ($"{name} splits {a} {first} and {b} {second} {items} among {friends} kids. How many does each get?",
            [new(a, '+', b), new(total, '/', friends)]);
    }

    private static (string Name, string Pronoun) Person(Rng rng)
    {
        int index = rng.NextInt(SheNames.Length + HeNames.Length);
        return index < SheNames.Length ? (SheNames[index], "she") : (HeNames[index - SheNames.Length], "he");
    }

    private static (string, string) TwoColours(Rng rng)
    {
        int first = rng.NextInt(Colours.Length), second = (first + 1 + rng.NextInt(Colours.Length - 1)) % Colours.Length;
        return (Colours[first], Colours[second]);
    }

    private static T Pick<T>(Rng rng, T[] options) => options[rng.NextInt(options.Length)];

    private static string Cap(string word) => char.ToUpperInvariant(word[0]) + word[1..];
}
