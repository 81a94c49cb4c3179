// Settings from three layers, later ones winning: the defaults of a settings class, a JSON file
// (`--config FILE.json`, property names in camelCase), and `--key value` options, one per property,
// named in kebab-case (GroupSize -> --group-size). Each property's XML-doc-free description comes
// from a [Description] attribute, so `--help` lists every setting with its default.
using System.CommandLine;
using System.ComponentModel;
using System.Globalization;
using System.Reflection;
using System.Text.Json;

namespace Grpo.Cli;

public sealed class SettingsBinder<T> where T : class, new()
{
    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    private readonly Option<string?> config;
    private readonly List<(PropertyInfo Property, Option Option)> options = [];

    public SettingsBinder(Command command, params string[] exclude)
    {
        // Several settings classes can share one command (demo: DemoSettings and GrpoSettings) and one file.
        config = command.Options.OfType<Option<string?>>().FirstOrDefault(o => o.Name == "--config")
            ?? new("--config") { Description = "JSON file of settings (camelCase names); options given on the command line override it" };
        if (!command.Options.Contains(config)) command.Options.Add(config);
        var defaults = new T();
        foreach (var property in typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (!property.CanWrite || exclude.Contains(property.Name)) continue;
            var description = property.GetCustomAttribute<DescriptionAttribute>()?.Description ?? property.Name;
            var value = property.GetValue(defaults);
            // A bool is a switch (`--from-scratch`, or `--from-scratch false`); the rest take a value.
            Option option = property.PropertyType == typeof(bool)
                ? new Option<bool>("--" + Kebab(property.Name)) { Description = $"{description} (default {Format(value)})", Arity = ArgumentArity.ZeroOrOne }
                : new Option<string?>("--" + Kebab(property.Name)) { Description = $"{description} (default {Format(value)})" };
            command.Options.Add(option);
            options.Add((property, option));
        }
    }

    /// <summary>Defaults, then the config file, then the options given. Throws ArgumentException on bad values.</summary>
    public T Bind(ParseResult parse, T? start = null)
    {
        var settings = start ?? new T();
        var file = parse.GetValue(config);
        if (file != null)
        {
            if (!File.Exists(file)) throw new ArgumentException($"config file not found: {file}");
            try { settings = JsonSerializer.Deserialize<T>(File.ReadAllText(file), Json) ?? new T(); }
            catch (JsonException e) { throw new ArgumentException($"config file {file}: {e.Message.Split('\n')[0]}"); }
        }
        foreach (var (property, option) in options)
        {
            var result = parse.GetResult(option);
            if (result == null || result.Implicit) continue;
            if (option is Option<bool> flag) property.SetValue(settings, parse.GetValue(flag));
            else if (parse.GetValue((Option<string?>)option) is { } text)
                property.SetValue(settings, Parse(text, property.PropertyType, "--" + Kebab(property.Name)));
        }
        return settings;
    }

    private static object Parse(string text, Type type, string name)
    {
        try
        {
            if (type == typeof(string)) return text;
            if (type == typeof(int)) return int.Parse(text, CultureInfo.InvariantCulture);
            if (type == typeof(long)) return long.Parse(text, CultureInfo.InvariantCulture);
            if (type == typeof(ulong)) return ulong.Parse(text, CultureInfo.InvariantCulture);
            if (type == typeof(float)) return float.Parse(text, CultureInfo.InvariantCulture);
            if (type == typeof(double)) return double.Parse(text, CultureInfo.InvariantCulture);
            if (type == typeof(bool)) return bool.Parse(text);
            if (type.IsEnum) return Enum.Parse(type, text.Replace("-", ""), ignoreCase: true);
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException)
        {
            var choices = type.IsEnum ? $" (one of {string.Join(", ", Enum.GetNames(type).Select(n => n.ToLowerInvariant()))})" : "";
            throw new ArgumentException($"{name}: cannot read '{text}' as {type.Name.ToLowerInvariant()}{choices}");
        }
        throw new ArgumentException($"{name}: unsupported setting type {type.Name}");
    }

    private static string Format(object? value) => value switch
    {
        null or "" => "none",
        float f => f.ToString("G", CultureInfo.InvariantCulture),
        double d => d.ToString("G", CultureInfo.InvariantCulture),
        Enum e => e.ToString().ToLowerInvariant(),
        bool b => b ? "true" : "false",
        _ => value.ToString() ?? "",
    };

    public static string Kebab(string name) =>
        string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? "-" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));
}
