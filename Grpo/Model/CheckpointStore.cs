// A run folder's checkpoints, written so that a crash loses at most the steps since the last one
// and a reader never trusts a half-written or damaged one.
//
//   DIR/checkpoints/step-000120/   model.safetensors, config.json, optimizer.safetensors,
//                                  trainer_state.json (Checkpoint's format), the tokenizer when
//                                  given (TokenizerFiles), and manifest.json:
//   {"format": "grpo-checkpoint", "version": 1, "step": 120,
//    "files": [{"name": "config.json", "bytes": 412, "sha256": "9f86d0..."}, ...]}
//
// Save: refuse NaN or infinity in any weight or AdamW moment before writing anything (NonFiniteValue
// says where, for a caller that would rather stop than throw); write every
// file into DIR/checkpoints/step-000120.tmp-XXXXXXXX/ (each one atomically and fsynced, see
// SafeFile), the manifest last; then rename the folder to step-000120. A process killed at any
// moment leaves either no step-000120 or a complete one; the *.tmp-* folder it leaves behind is
// ignored by readers and removed by the next Save (one writer per run folder is assumed). A caller's
// own files (GRPO's reference model) go in through writeMore and are listed in the manifest too.
// Newest: the highest step whose manifest verifies (every listed file present, of the listed size,
// with the listed SHA-256); the folders passed over are returned with the reason, for the caller
// to show. Retention (keepLast) deletes the oldest checkpoints at or below the one just saved.
// Not done: an fsync of the parent folder after the rename (.NET cannot open a folder), so after a
// power cut the newest checkpoint may be missing, but never half there.
// Tests: Grpo.Tests/Reliability/CheckpointStoreTests.cs, BadInputTests.cs.
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Grpo.Optim;
using Grpo.Sampling;
using Grpo.Tasks;

namespace Grpo.Model;

public static partial class CheckpointStore
{
    public const string CheckpointsFolder = "checkpoints";
    public const string ManifestFile = "manifest.json";
    public const string Format = "grpo-checkpoint";
    public const long MaxManifestBytes = 1 << 20;

    private static readonly string[] RequiredFiles =
        [Checkpoint.ModelFile, Checkpoint.ConfigFile, Checkpoint.OptimizerFile, Checkpoint.StateFile];

    /// <summary>The newest verified checkpoint (Path null and Step -1 when there is none) and, one line
    /// each, the newer folders passed over and why.</summary>
    public sealed record Found(string? Path, int Step, IReadOnlyList<string> Skipped);

    /// <summary>DIR/checkpoints/step-000123.</summary>
    public static string FolderFor(string runDir, int step) =>
        Path.Combine(runDir, CheckpointsFolder, "step-" + step.ToString("D6", CultureInfo.InvariantCulture));

    /// <summary>Writes a complete checkpoint of step <paramref name="step"/> and returns its folder.
    /// Throws InvalidOperationException, having written nothing, when a weight or moment is not finite.
    /// With keepLast > 0, only that many checkpoints at or below this step are kept.
    /// <paramref name="writeMore"/>, when given, writes further files into the (temporary) folder before
    /// the manifest is made, so they are verified with the rest (GRPO's reference model).</summary>
    public static string Save(string runDir, int step, Transformer model, AdamW optimizer, Rng rng,
        JsonObject? extra = null, int keepLast = 0, ITokenizer? tokenizer = null, Action<string>? writeMore = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfNegative(keepLast);
        if (NonFiniteValue(model, optimizer) is { } problem)
            throw new InvalidOperationException($"not saving the checkpoint of step {step}: {problem} (NaN and infinity never reach a checkpoint)");

        string root = Path.Combine(runDir, CheckpointsFolder);
        Directory.CreateDirectory(root);
        RemoveUnfinished(root);
        string final = FolderFor(runDir, step);
        string temporary = final + SafeFile.TempMarker + Guid.NewGuid().ToString("N")[..8];
        Directory.CreateDirectory(temporary);
        try
        {
            Checkpoint.Save(temporary, model, optimizer, rng, extra, tokenizer);
            writeMore?.Invoke(temporary);
            WriteManifest(temporary, step);
            if (Directory.Exists(final))
            {
                // The same step saved again (a run resumed from before it): the old copy steps aside
                // under a temporary name first. A crash between the two renames leaves no folder for
                // this step, so Newest finds the one before it: never a mix of the two.
                string old = final + SafeFile.TempMarker + "replaced";
                if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
                Directory.Move(final, old);
                Directory.Move(temporary, final);
                Directory.Delete(old, recursive: true);
            }
            else Directory.Move(temporary, final);
        }
        catch
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
            throw;
        }
        if (keepLast > 0) Prune(root, step, keepLast);
        return final;
    }

    /// <summary>The newest checkpoint in the run folder whose manifest verifies.</summary>
    public static Found Newest(string runDir)
    {
        string root = Path.Combine(runDir, CheckpointsFolder);
        var skipped = new List<string>();
        if (!Directory.Exists(root)) return new Found(null, -1, skipped);
        foreach (var folder in Directory.GetDirectories(root).Order(StringComparer.Ordinal))
            if (Path.GetFileName(folder).Contains(SafeFile.TempMarker))
                skipped.Add($"{Path.GetFileName(folder)}: an unfinished write (a writer was stopped), ignored");
        foreach (var (step, folder) in StepFolders(root).OrderByDescending(s => s.Step))
        {
            if (TryVerify(folder, out string? problem)) return new Found(folder, step, skipped);
            skipped.Add($"{Path.GetFileName(folder)}: {problem}");
        }
        return new Found(null, -1, skipped);
    }

    /// <summary>Throws ModelFormatException (one line) unless every file the manifest lists is there with its size and SHA-256.</summary>
    public static void Verify(string checkpointPath)
    {
        if (!TryVerify(checkpointPath, out string? problem))
            throw new ModelFormatException($"{checkpointPath}: {problem}");
    }

    public static bool TryVerify(string checkpointPath, out string? problem)
    {
        try
        {
            problem = ManifestProblem(checkpointPath);
        }
        catch (ModelFormatException e) { problem = e.Message; }
        catch (IOException e) { problem = $"unreadable ({e.Message})"; }
        catch (UnauthorizedAccessException e) { problem = $"unreadable ({e.Message})"; }
        return problem is null;
    }

    /// <summary>Verifies the checkpoint, then restores the weights into <paramref name="model"/> (whose
    /// config must equal the saved one), the optimizer and the RNG; returns the extra JSON saved with it.</summary>
    public static JsonObject? Load(string checkpointPath, Transformer model, AdamW optimizer, Rng rng)
    {
        Verify(checkpointPath);
        var saved = TransformerConfig.FromFile(Path.Combine(checkpointPath, Checkpoint.ConfigFile));
        if (saved != model.Config)
            throw new ModelFormatException($"{checkpointPath}: saved from a model with {saved}, this model has {model.Config}");
        Checkpoint.LoadWeights(Path.Combine(checkpointPath, Checkpoint.ModelFile), model);
        return Checkpoint.LoadTrainingState(checkpointPath, optimizer, rng);
    }

    /// <summary>The step recorded in a checkpoint's manifest.</summary>
    public static int StepOf(string checkpointPath) => ReadManifest(checkpointPath).Step;

    /// <summary>Null when every weight and AdamW moment is finite, else where the first NaN or infinity is.</summary>
    public static string? NonFiniteValue(Transformer model, AdamW optimizer)
    {
        static string? Find(float[] values, string what)
        {
            for (int i = 0; i < values.Length; i++)
                if (!float.IsFinite(values[i]))
                    return $"{what} holds {(float.IsNaN(values[i]) ? "NaN" : values[i] > 0 ? "+infinity" : "-infinity")} at index {i}";
            return null;
        }
        static float[] Host(Tensor t) => t.IsOnDevice ? t.ToArray() : t.Data;
        foreach (var (name, value) in model.Parameters)
            if (Find(Host(value), $"weight '{name}'") is { } problem) return problem;
        foreach (var slot in optimizer.Slots)
            if ((Find(Host(slot.M), $"AdamW's first moment of '{slot.Name}'") ?? Find(Host(slot.V), $"AdamW's second moment of '{slot.Name}'")) is { } problem) return problem;
        return null;
    }

    private static void WriteManifest(string folder, int step)
    {
        var files = new JsonArray();
        foreach (var path in Directory.GetFiles(folder).Order(StringComparer.Ordinal))
        {
            var info = new FileInfo(path);
            files.Add(new JsonObject
            {
                ["name"] = info.Name,
                ["bytes"] = info.Length,
                ["sha256"] = Sha256(path),
            });
        }
        var manifest = new JsonObject { ["format"] = Format, ["version"] = 1, ["step"] = step, ["files"] = files };
        SafeFile.WriteAllTextAtomic(Path.Combine(folder, ManifestFile), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    internal sealed record Manifest(int Step, List<(string Name, long Bytes, string Sha256)> Files);

    private static Manifest ReadManifest(string folder)
    {
        string path = Path.Combine(folder, ManifestFile);
        if (!File.Exists(path)) throw new ModelFormatException("no manifest.json (an incomplete or foreign checkpoint)");
        return ParseManifest(SafeFile.ReadAllTextBounded(path, MaxManifestBytes));
    }

    internal static Manifest ParseManifest(string json)
    {
        try
        {
            var root = JsonNode.Parse(json) as JsonObject
                ?? throw new ModelFormatException("manifest.json is not a JSON object");
            if (root["format"]?.GetValue<string>() != Format) throw new ModelFormatException($"manifest.json is not a {Format} manifest");
            if (root["version"]?.GetValue<int>() != 1) throw new ModelFormatException("manifest.json is not version 1 (written by another Grpo?)");
            int step = root["step"]?.GetValue<int>() ?? throw new ModelFormatException("manifest.json has no step");
            var list = root["files"] as JsonArray ?? throw new ModelFormatException("manifest.json has no file list");
            var files = new List<(string, long, string)>();
            foreach (var node in list)
            {
                string name = node?["name"]?.GetValue<string>() ?? throw new ModelFormatException("manifest.json lists a file without a name");
                // A manifest names files in its own folder only: "../x" or "/etc/x" is a damaged or hostile one.
                if (name.Length == 0 || name != Path.GetFileName(name) || name is "." or "..")
                    throw new ModelFormatException($"manifest.json lists '{name}', which is not a file name");
                long bytes = node["bytes"]?.GetValue<long>() ?? throw new ModelFormatException($"manifest.json gives no size for {name}");
                string sha = node["sha256"]?.GetValue<string>() ?? throw new ModelFormatException($"manifest.json gives no sha256 for {name}");
                files.Add((name, bytes, sha));
            }
            return new Manifest(step, files);
        }
        catch (JsonException e) { throw new ModelFormatException($"manifest.json is not valid JSON ({e.Message})", e); }
        catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException)
        {
            throw new ModelFormatException($"manifest.json is malformed ({e.Message})", e);
        }
    }

    /// <summary>Null when the folder is a complete checkpoint, else the first thing wrong with it.</summary>
    private static string? ManifestProblem(string folder)
    {
        var manifest = ReadManifest(folder);
        if (StepFromName(Path.GetFileName(folder)) is int named && named != manifest.Step)
            return $"manifest.json says step {manifest.Step} but the folder is named for step {named}";
        foreach (var required in RequiredFiles)
            if (!manifest.Files.Any(f => f.Name == required)) return $"manifest.json does not list {required}";
        foreach (var (name, bytes, sha) in manifest.Files)
        {
            var info = new FileInfo(Path.Combine(folder, name));
            if (!info.Exists) return $"{name} is missing";
            if (info.Length != bytes) return $"{name} is {info.Length} bytes, the manifest says {bytes}";
            if (!string.Equals(Sha256(info.FullName), sha, StringComparison.OrdinalIgnoreCase))
                return $"{name} does not match its SHA-256 in the manifest (the file was changed or damaged)";
        }
        return null;
    }

    private static string Sha256(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    private static IEnumerable<(int Step, string Folder)> StepFolders(string root)
    {
        foreach (var folder in Directory.GetDirectories(root))
            if (StepFromName(Path.GetFileName(folder)) is int step) yield return (step, folder);
    }

    private static int? StepFromName(string name)
    {
        var match = StepName().Match(name);
        return match.Success && int.TryParse(match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out int step) ? step : null;
    }

    [GeneratedRegex(@"^step-([0-9]+)$")]
    private static partial Regex StepName();

    private static void RemoveUnfinished(string root)
    {
        foreach (var folder in Directory.GetDirectories(root))
            if (Path.GetFileName(folder).Contains(SafeFile.TempMarker)) Directory.Delete(folder, recursive: true);
    }

    private static void Prune(string root, int savedStep, int keepLast)
    {
        // Only folders at or below the step just saved count: one above it is left from a run this one
        // resumed before (damaged, or it would have been resumed from) and is not ours to judge here.
        foreach (var (_, folder) in StepFolders(root).Where(s => s.Step <= savedStep).OrderByDescending(s => s.Step).Skip(keepLast))
            Directory.Delete(folder, recursive: true);
    }
}
