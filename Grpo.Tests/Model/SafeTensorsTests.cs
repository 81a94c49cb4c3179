// The safetensors reader and writer: an F32 round trip, BF16/F16 decoding by hand, and every kind of
// bad file giving a ModelFormatException that names the problem (never an out-of-memory or a crash).
using System.Buffers.Binary;
using System.Text;
using Grpo.Model;

namespace Grpo.Tests.Model;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("grpo-safetensors-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private string PathOf(string name) => Path.Combine(folder, name);

    /// <summary>A file with the given JSON header (unpadded) followed by the given data bytes.</summary>
    private string WriteRaw(string name, string header, byte[] data, ulong? claimedHeaderLength = null)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, claimedHeaderLength ?? (ulong)json.Length);
        json.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + json.Length);
        File.WriteAllBytes(PathOf(name), bytes);
        return PathOf(name);
    }

    [Fact]
    public void F32RoundTripKeepsValuesShapesAndMetadata()
    {
        var a = new Tensor([1f, -2.5f, 3e-8f, float.MaxValue, 0f, -0f], 2, 3);
        var b = new Tensor([42f], 1);
        var scalar = new Tensor([7f]);
        string path = PathOf("round.safetensors");
        SafeTensors.Write(path, [("a", a), ("b", b), ("s", scalar)], new Dictionary<string, string> { ["format"] = "pt" });

        var (tensors, metadata) = SafeTensors.ReadAll(path);
        Assert.Equal([2, 3], tensors["a"].Shape);
        Assert.Equal(a.Data, tensors["a"].Data);
        Assert.Equal(b.Data, tensors["b"].Data);
        Assert.Empty(tensors["s"].Shape);
        Assert.Equal(7f, tensors["s"].Item());
        Assert.Equal("pt", metadata["format"]);
        // The header is padded so the data starts 8-byte aligned.
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(File.ReadAllBytes(path)) % 8);
    }

    [Fact]
    public void Bf16AndF16DecodeByHand()
    {
        // BF16 0x3F80 is the top half of F32 0x3F800000 = 1.0; 0xC000 -> 0xC0000000 = -2.0.
        // F16 0x3C00: sign 0, exponent 15 (bias 15), mantissa 0 -> 1.0; 0xC000: sign 1, exponent 16 -> -2.0;
        // 0x3555: exponent 13, mantissa 0x155/1024 -> 2^-2 * 1.333 = 0.33325.
        Assert.Equal(1f, SafeTensors.Bf16ToFloat(0x3F80));
        Assert.Equal(-2f, SafeTensors.Bf16ToFloat(0xC000));
        Assert.Equal(1f, SafeTensors.F16ToFloat(0x3C00));
        Assert.Equal(-2f, SafeTensors.F16ToFloat(0xC000));
        Assert.Equal(0.33325195f, SafeTensors.F16ToFloat(0x3555));

        // And through a file: little-endian bytes 80 3F 00 C0 are [0x3F80, 0xC000].
        byte[] data = [0x80, 0x3F, 0x00, 0xC0, 0x00, 0x3C, 0x00, 0xC0];
        string path = WriteRaw("half.safetensors",
            """{"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"h":{"dtype":"F16","shape":[1,2],"data_offsets":[4,8]}}""", data);
        var (tensors, _) = SafeTensors.ReadAll(path);
        Assert.Equal([1f, -2f], tensors["b"].Data);
        Assert.Equal([1f, -2f], tensors["h"].Data);
        Assert.Equal([1, 2], tensors["h"].Shape);
    }

    [Fact]
    public void TruncatedFileIsNamed()
    {
        File.WriteAllBytes(PathOf("short.safetensors"), [1, 2, 3]);
        var e = Assert.Throws<ModelFormatException>(() => new SafeTensorsReader(PathOf("short.safetensors")));
        Assert.Contains("short.safetensors", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void HeaderLongerThanFileIsRefusedBeforeAllocating()
    {
        // A header length of 2^62 would be an out-of-memory if trusted.
        string path = WriteRaw("huge.safetensors", "{}", [], claimedHeaderLength: 1UL << 62);
        var e = Assert.Throws<ModelFormatException>(() => new SafeTensorsReader(path));
        Assert.Contains("header claims", e.Message);
        Assert.Contains("huge.safetensors", e.Message);
    }

    [Fact]
    public void UnknownDtypeNamesTensorAndFile()
    {
        string path = WriteRaw("dtype.safetensors", """{"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}""", new byte[4]);
        var e = Assert.Throws<ModelFormatException>(() => new SafeTensorsReader(path));
        Assert.Contains("'w'", e.Message);
        Assert.Contains("F8_E4M3", e.Message);
        Assert.Contains("dtype.safetensors", e.Message);
    }

    [Fact]
    public void OffsetsOutsideTheFileAreRefused()
    {
        string path = WriteRaw("offsets.safetensors", """{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", new byte[8]);
        var e = Assert.Throws<ModelFormatException>(() => new SafeTensorsReader(path));
        Assert.Contains("'w'", e.Message);
        Assert.Contains("outside the data section", e.Message);
    }

    [Fact]
    public void SizeDisagreeingWithShapeIsRefused()
    {
        // Shape [3] of F32 needs 12 bytes, the offsets give 8.
        string path = WriteRaw("size.safetensors", """{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", new byte[8]);
        var e = Assert.Throws<ModelFormatException>(() => new SafeTensorsReader(path));
        Assert.Contains("'w'", e.Message);
        Assert.Contains("need 12", e.Message);
    }

    [Fact]
    public void BadJsonAndMissingFileAreOneLineErrors()
    {
        string path = WriteRaw("json.safetensors", "{not json", []);
        var e = Assert.Throws<ModelFormatException>(() => new SafeTensorsReader(path));
        Assert.Contains("not valid JSON", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Throws<ModelFormatException>(() => new SafeTensorsReader(PathOf("absent.safetensors")));
    }
}
