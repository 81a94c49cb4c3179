// File I/O that survives a crash and a hostile input: the two habits every checkpoint and model
// file here goes through.
//
// Atomic write: the bytes go to a temporary file in the SAME folder (a rename is atomic only within
// one file system), are flushed to the disk (FileStream.Flush(true), fsync), and the file is then
// renamed over the target. A process killed at any moment leaves either the old file or the new
// one, never half of one; what it can leave is a stray "*.tmp-*" file, which readers ignore.
// Bounded read: a text file (config.json, trainer_state.json, a manifest) is refused by its size on
// disk BEFORE it is read, so a wrong path pointing at a multi-gigabyte file cannot fill memory.
// Errors are ModelFormatException, one line naming the file.
// Tests: Grpo.Tests/Reliability/CheckpointStoreTests.cs, BadInputTests.cs.
using System.Text;

namespace Grpo.Model;

public static class SafeFile
{
    /// <summary>The marker in a temporary file's name; anything containing it is an unfinished write.</summary>
    public const string TempMarker = ".tmp-";

    /// <summary>Writes through <paramref name="write"/> to a temporary file beside <paramref name="path"/>, fsyncs it, then renames it into place.</summary>
    public static void WriteAtomic(string path, Action<Stream> write)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        // A unique temporary name: two writers of the same path never share a temporary file.
        string temporary = Path.Combine(directory, Path.GetFileName(path) + TempMarker + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    /// <summary>UTF-8 text (no byte-order mark), written atomically.</summary>
    public static void WriteAllTextAtomic(string path, string text) =>
        WriteAtomic(path, stream => stream.Write(Encoding.UTF8.GetBytes(text)));

    /// <summary>The file's text, refused with a ModelFormatException when it is missing or longer than <paramref name="maxBytes"/>.</summary>
    public static string ReadAllTextBounded(string path, long maxBytes)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new ModelFormatException($"{path}: file not found");
        if (info.Length > maxBytes)
            throw new ModelFormatException($"{path}: {info.Length} bytes is more than the {maxBytes}-byte limit for this file");
        return File.ReadAllText(path, Encoding.UTF8);
    }
}
