// The safetensors format (Hugging Face), read and written without reading the file twice.
//
// Layout: an 8-byte little-endian unsigned header length N, then N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ..., "__metadata__": {"k": "v"}}
// then the raw data; offsets are relative to the end of the header, values little-endian, row-major.
// Read: F32, F16 and BF16 (both widened to float32). Written: F32. BF16 is the top half of an F32
// (0x3F80 -> 0x3F800000 = 1.0); F16 is IEEE half (0x3C00 = 1.0, 0xC000 = -2.0).
// Every claim in the header is checked before it is trusted: the header length against the file
// (and a 100 MB cap, so a corrupt length cannot allocate gigabytes), each tensor's offsets against
// the data section, its byte size against dtype size * shape product. A violation is a
// ModelFormatException naming the file and the tensor; nothing else escapes the reader (10,000
// mutated files a run: Grpo.Tests/Reliability/FuzzTests.cs). The reader also takes a Stream.
// Files are written atomically (SafeFile). Tests: Grpo.Tests/Model/SafeTensorsTests.cs.
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Grpo.Model;

public static class SafeTensors
{
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    /// <summary>A tensor's entry in the header.</summary>
    public sealed record Entry(string Name, string Dtype, int[] Shape, long Begin, long End);

    /// <summary>Writes the tensors as F32 in the given order, with optional string metadata.</summary>
    public static void Write(string path, IEnumerable<(string Name, Tensor Value)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
        {
            var meta = new JsonObject();
            foreach (var (key, value) in metadata) meta[key] = value;
            header["__metadata__"] = meta;
        }
        long offset = 0;
        foreach (var (name, value) in list)
        {
            if (name == "__metadata__" || header.ContainsKey(name)) throw new ArgumentException($"tensor name '{name}' is reserved or repeated");
            long bytes = (long)value.Size * sizeof(float);
            header[name] = new JsonObject
            {
                ["dtype"] = "F32",
                ["shape"] = new JsonArray(value.Shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        // Pad the header with spaces to a multiple of 8 so the data that follows is aligned (as the reference writer does).
        int padded = (json.Length + 7) / 8 * 8;
        var headerBytes = new byte[padded];
        Array.Fill(headerBytes, (byte)' ');
        json.CopyTo(headerBytes, 0);

        // Written beside the target, flushed to disk, then renamed: a crash never leaves half a file.
        SafeFile.WriteAtomic(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
            stream.Write(length);
            stream.Write(headerBytes);
            foreach (var (_, value) in list) WriteLittleEndian(stream, value.IsOnDevice ? value.ToArray() : value.Data);
        });
    }

    /// <summary>Reads every tensor (as float32) and the metadata.</summary>
    public static (Dictionary<string, Tensor> Tensors, Dictionary<string, string> Metadata) ReadAll(string path)
    {
        using var reader = new SafeTensorsReader(path);
        var tensors = new Dictionary<string, Tensor>();
        foreach (var entry in reader.Entries) tensors[entry.Name] = reader.Read(entry.Name);
        return (tensors, new Dictionary<string, string>(reader.Metadata));
    }

    private static void WriteLittleEndian(Stream stream, float[] data)
    {
        if (BitConverter.IsLittleEndian)
        {
            stream.Write(MemoryMarshal.AsBytes(data.AsSpan()));
            return;
        }
        var buffer = new byte[4];
        foreach (var x in data)
        {
            BinaryPrimitives.WriteSingleLittleEndian(buffer, x);
            stream.Write(buffer);
        }
    }

    internal static int DtypeSize(string dtype) => dtype switch
    {
        "F32" => 4,
        "F16" or "BF16" => 2,
        _ => 0,
    };

    public static float Bf16ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    public static float F16ToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);
}

/// <summary>An open safetensors file: the header is parsed and checked at once; tensors are read one by one on demand.</summary>
public sealed class SafeTensorsReader : IDisposable
{
    private readonly Stream stream;
    private readonly long dataStart;
    private readonly Dictionary<string, SafeTensors.Entry> byName = new();

    public string Path { get; }
    public IReadOnlyList<SafeTensors.Entry> Entries { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public SafeTensorsReader(string path)
    {
        Path = path;
        try { stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new ModelFormatException($"{path}: file not found", e);
        }
        (Entries, Metadata, dataStart) = ReadHeaderOrDispose();
        foreach (var entry in Entries) byName[entry.Name] = entry;
    }

    /// <summary>Reads from an open seekable stream (a file already in memory, as the fuzz test does); <paramref name="name"/> is what errors call it. The reader disposes the stream.</summary>
    public SafeTensorsReader(Stream stream, string name)
    {
        if (!stream.CanSeek || !stream.CanRead) throw new ArgumentException("the stream must be readable and seekable", nameof(stream));
        Path = name;
        this.stream = stream;
        (Entries, Metadata, dataStart) = ReadHeaderOrDispose();
        foreach (var entry in Entries) byName[entry.Name] = entry;
    }

    private (List<SafeTensors.Entry>, Dictionary<string, string>, long) ReadHeaderOrDispose()
    {
        try { return ReadHeader(); }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => byName.ContainsKey(name);

    public SafeTensors.Entry Entry(string name) =>
        byName.TryGetValue(name, out var entry) ? entry : throw new ModelFormatException($"{Path}: no tensor named '{name}'");

    /// <summary>Reads one tensor, widened to float32.</summary>
    public Tensor Read(string name)
    {
        var entry = Entry(name);
        int count = checked((int)((entry.End - entry.Begin) / SafeTensors.DtypeSize(entry.Dtype)));
        var data = new float[count];
        stream.Position = dataStart + entry.Begin;
        try
        {
            if (entry.Dtype == "F32")
            {
                stream.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan()));
                if (!BitConverter.IsLittleEndian)
                    for (int i = 0; i < count; i++)
                        data[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReverseEndianness(BitConverter.SingleToInt32Bits(data[i])));
            }
            else ReadHalves(entry.Dtype == "BF16", data);
        }
        catch (EndOfStreamException e)
        {
            throw new ModelFormatException($"{Path}: tensor '{name}' ends past the end of the file", e);
        }
        return new Tensor(data, entry.Shape);
    }

    private void ReadHalves(bool bf16, float[] data)
    {
        // Converted through a fixed-size buffer: a large tensor never exists twice in memory.
        var buffer = new byte[1 << 16];
        for (int done = 0; done < data.Length;)
        {
            int n = Math.Min(buffer.Length / 2, data.Length - done);
            stream.ReadExactly(buffer, 0, 2 * n);
            for (int i = 0; i < n; i++)
            {
                ushort bits = BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(2 * i));
                data[done + i] = bf16 ? SafeTensors.Bf16ToFloat(bits) : SafeTensors.F16ToFloat(bits);
            }
            done += n;
        }
    }

    private (List<SafeTensors.Entry>, Dictionary<string, string>, long) ReadHeader()
    {
        long fileLength = stream.Length;
        if (fileLength < 8) throw new ModelFormatException($"{Path}: truncated file ({fileLength} bytes, the header length alone takes 8)");
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > (ulong)(fileLength - 8))
            throw new ModelFormatException($"{Path}: header claims {headerLength} bytes but the file has only {fileLength - 8} after the length (truncated or not safetensors)");
        if (headerLength > SafeTensors.MaxHeaderBytes)
            throw new ModelFormatException($"{Path}: header of {headerLength} bytes exceeds the {SafeTensors.MaxHeaderBytes}-byte limit");
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        JsonObject header;
        try
        {
            header = JsonNode.Parse(headerBytes) as JsonObject
                ?? throw new ModelFormatException($"{Path}: header is not a JSON object");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"{Path}: header is not valid JSON ({e.Message})", e);
        }

        var metadata = new Dictionary<string, string>();
        var entries = new List<SafeTensors.Entry>();
        try
        {
            foreach (var (name, node) in header)
            {
                if (name == "__metadata__")
                {
                    if (node is not JsonObject meta) throw new ModelFormatException($"{Path}: __metadata__ is not an object");
                    foreach (var (key, value) in meta)
                        metadata[key] = value is JsonValue v && v.TryGetValue(out string? text) ? text
                            : throw new ModelFormatException($"{Path}: metadata '{key}' is not a string");
                    continue;
                }
                entries.Add(ParseEntry(name, node, dataLength));
            }
        }
        // JsonNode reads names and strings lazily, so a repeated tensor name (ArgumentException) or
        // text that is not valid UTF-8 or UTF-16 (InvalidOperationException) surfaces only here.
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            throw new ModelFormatException($"{Path}: header is malformed ({e.Message})", e);
        }
        return (entries, metadata, dataStart);
    }

    private SafeTensors.Entry ParseEntry(string name, JsonNode? node, long dataLength)
    {
        string Where() => $"{Path}: tensor '{name}'";
        try
        {
            if (node is not JsonObject info) throw new ModelFormatException($"{Where()}: entry is not an object");
            string dtype = info["dtype"]?.GetValue<string>() ?? throw new ModelFormatException($"{Where()}: no dtype");
            int size = SafeTensors.DtypeSize(dtype);
            if (size == 0) throw new ModelFormatException($"{Where()}: unsupported dtype '{dtype}' (F32, F16 and BF16 are read)");
            var shapeNode = info["shape"] as JsonArray ?? throw new ModelFormatException($"{Where()}: no shape");
            var shape = shapeNode.Select(d => d!.GetValue<long>()).ToArray();
            if (shape.Any(d => d < 0 || d > int.MaxValue)) throw new ModelFormatException($"{Where()}: bad shape [{string.Join(", ", shape)}]");
            var offsets = info["data_offsets"] as JsonArray ?? throw new ModelFormatException($"{Where()}: no data_offsets");
            if (offsets.Count != 2) throw new ModelFormatException($"{Where()}: data_offsets must hold two numbers");
            long begin = offsets[0]!.GetValue<long>(), end = offsets[1]!.GetValue<long>();
            if (begin < 0 || end < begin || end > dataLength)
                throw new ModelFormatException($"{Where()}: data_offsets [{begin}, {end}] fall outside the data section of {dataLength} bytes");
            long count = 1;
            foreach (var d in shape) count = checked(count * d);
            if (count > Array.MaxLength) throw new ModelFormatException($"{Where()}: {count} elements is more than one array can hold");
            if (end - begin != count * size)
                throw new ModelFormatException($"{Where()}: {end - begin} bytes of data but dtype {dtype} and shape [{string.Join(", ", shape)}] need {count * size}");
            return new SafeTensors.Entry(name, dtype, shape.Select(d => (int)d).ToArray(), begin, end);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or OverflowException)
        {
            throw new ModelFormatException($"{Where()}: malformed entry ({e.Message})", e);
        }
    }

    public void Dispose() => stream.Dispose();
}
