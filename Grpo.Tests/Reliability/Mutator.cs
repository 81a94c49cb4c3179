// Seeded mutations of a valid file, for the fuzz tests: the damage real files suffer (a flipped
// bit, a truncated download, an interrupted copy that repeats a block) and the tampering a hostile
// or careless writer does (a huge length field, a number out of range, a field of the wrong type).
// Each call applies one to three mutations and says which, so a failure names how to rebuild the
// input: the seed and iteration, and the list of mutations.
// Used by Grpo.Tests/Reliability/FuzzTests.cs.
using System.Buffers.Binary;
using System.Text;
using Grpo.Sampling;

namespace Grpo.Tests.Reliability;

public static class Mutator
{
    private static readonly string[] NumberReplacements =
    [
        "-1", "0", "1", "-0", "1.5", "2147483647", "2147483648", "-2147483649", "4294967296",
        "9223372036854775807", "9223372036854775808", "18446744073709551616", "99999999999999999999999",
        "1e999", "-1e999", "1e-999", "NaN", "Infinity", "0x10", "00", "1e2",
    ];

    private static readonly string[] ValueReplacements =
    [
        "null", "true", "[]", "{}", "\"\"", "0", "-1", "[1,2]", "[[]]", "{\"a\":1}", "\"F64\"", "\"BF16\"",
        "\"F16\"", "\"F32\"", "\"I8\"", "\"__metadata__\"", "\"#### 5\"", "\"x\\u0000y\"", "\"\\ud800\"", "[0,99999999999]",
        new string('[', 200), "\"\u00e9\u4e2d\"",
    ];

    private static readonly byte[] InterestingBytes = [0x00, 0xFF, 0x7F, 0x80, 0xC3, .. "\"{}[],:0-9eE.\\\n\r "u8];

    /// <summary>One to three generic mutations: bytes, ranges, JSON numbers and values.</summary>
    public static byte[] Mutate(Rng rng, byte[] valid, List<string> applied)
    {
        var bytes = valid;
        int count = 1 + rng.NextInt(3);
        for (int i = 0; i < count; i++) bytes = MutateOnce(rng, bytes, applied);
        return bytes;
    }

    /// <summary>For a safetensors file: a third of the time the header length field is set to a
    /// tampered value; a third, the header JSON alone is mutated and the length fixed up to match
    /// (so the mutation reaches the entry checks); a third, generic mutations of the whole file.</summary>
    public static byte[] MutateSafeTensors(Rng rng, byte[] valid, List<string> applied)
    {
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(valid);
        switch (rng.NextInt(3))
        {
            case 0:
            {
                var bytes = (byte[])Mutate(rng, valid, applied).Clone();   // a mutation may hand back the valid array itself
                if (bytes.Length < 8) return bytes;
                ulong fileLength = (ulong)bytes.Length;
                ulong[] lengths =
                [
                    ulong.MaxValue, long.MaxValue, 1UL << 62, 1UL << 32, fileLength, fileLength - 8, fileLength - 7,
                    headerLength + 1, headerLength - 1, 0, 1, 2, 100L * 1024 * 1024 + 1, rng.NextULong(),
                ];
                ulong length = lengths[rng.NextInt(lengths.Length)];
                applied.Add($"header length field = {length}");
                BinaryPrimitives.WriteUInt64LittleEndian(bytes, length);
                return bytes;
            }
            case 1:
            {
                var header = valid.AsSpan(8, (int)headerLength).ToArray();
                var data = valid.AsSpan(8 + (int)headerLength).ToArray();
                var mutated = Mutate(rng, header, applied);
                applied.Add("header length fixed up");
                var bytes = new byte[8 + mutated.Length + data.Length];
                BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)mutated.Length);
                mutated.CopyTo(bytes, 8);
                data.CopyTo(bytes, 8 + mutated.Length);
                return bytes;
            }
            default:
                return Mutate(rng, valid, applied);
        }
    }

    private static byte[] MutateOnce(Rng rng, byte[] bytes, List<string> applied)
    {
        if (bytes.Length == 0)
        {
            applied.Add("insert into an empty file");
            return [InterestingBytes[rng.NextInt(InterestingBytes.Length)]];
        }
        int at = rng.NextInt(bytes.Length);
        switch (rng.NextInt(10))
        {
            case 0:
            {
                int bit = rng.NextInt(8);
                applied.Add($"flip bit {bit} of byte {at}");
                var copy = (byte[])bytes.Clone();
                copy[at] ^= (byte)(1 << bit);
                return copy;
            }
            case 1:
            {
                byte value = InterestingBytes[rng.NextInt(InterestingBytes.Length)];
                applied.Add($"byte {at} = 0x{value:X2}");
                var copy = (byte[])bytes.Clone();
                copy[at] = value;
                return copy;
            }
            case 2:
                applied.Add($"truncate to {at} bytes");
                return bytes[..at];
            case 3:
            {
                var inserted = new byte[1 + rng.NextInt(16)];
                for (int i = 0; i < inserted.Length; i++)
                    inserted[i] = rng.NextInt(2) == 0 ? (byte)rng.NextInt(256) : InterestingBytes[rng.NextInt(InterestingBytes.Length)];
                applied.Add($"insert {inserted.Length} bytes at {at}");
                return [.. bytes[..at], .. inserted, .. bytes[at..]];
            }
            case 4:
            {
                int length = 1 + rng.NextInt(Math.Min(64, bytes.Length - at));
                applied.Add($"delete bytes {at}..{at + length}");
                return [.. bytes[..at], .. bytes[(at + length)..]];
            }
            case 5:
            {
                int length = 1 + rng.NextInt(Math.Min(256, bytes.Length - at));
                int to = rng.NextInt(bytes.Length + 1);
                applied.Add($"copy bytes {at}..{at + length} to {to}");
                var range = bytes[at..(at + length)];
                return [.. bytes[..to], .. range, .. bytes[to..]];
            }
            case 6:
                return ReplaceToken(rng, bytes, applied, IsNumberByte, NumberReplacements, "number");
            case 7:
                return ReplaceToken(rng, bytes, applied, null, ValueReplacements, "string");
            case 8:
            {
                // A long run of one byte: reaches the length bounds (a JSONL line, a header).
                int length = rng.NextInt(8) == 0 ? 70_000 + rng.NextInt(10_000) : 1 + rng.NextInt(300);
                byte value = InterestingBytes[rng.NextInt(InterestingBytes.Length)];
                applied.Add($"insert {length} x 0x{value:X2} at {at}");
                var run = new byte[length];
                Array.Fill(run, value);
                return [.. bytes[..at], .. run, .. bytes[at..]];
            }
            default:
            {
                // A field dropped: from a quote to the next comma or closing brace.
                int quote = Array.IndexOf(bytes, (byte)'"', at);
                if (quote < 0) goto case 2;
                int end = quote + 1;
                while (end < bytes.Length && bytes[end] is not ((byte)',' or (byte)'}')) end++;
                applied.Add($"drop bytes {quote}..{end} (a field)");
                return [.. bytes[..quote], .. bytes[Math.Min(end + 1, bytes.Length)..]];
            }
        }
    }

    private static bool IsNumberByte(byte b) => b is (>= (byte)'0' and <= (byte)'9') or (byte)'-' or (byte)'.' or (byte)'e' or (byte)'E' or (byte)'+';

    /// <summary>Replaces the token found near a random spot (a run of number characters, or a quoted string) with one of the replacements.</summary>
    private static byte[] ReplaceToken(Rng rng, byte[] bytes, List<string> applied, Func<byte, bool>? isNumber, string[] replacements, string what)
    {
        int start = rng.NextInt(bytes.Length), end;
        if (isNumber is not null)
        {
            while (start < bytes.Length && !(bytes[start] >= '0' && bytes[start] <= '9')) start++;
            if (start == bytes.Length) return bytes;
            while (start > 0 && isNumber(bytes[start - 1])) start--;
            end = start;
            while (end < bytes.Length && isNumber(bytes[end])) end++;
        }
        else
        {
            start = Array.IndexOf(bytes, (byte)'"', start);
            if (start < 0) return bytes;
            end = start + 1;
            while (end < bytes.Length && bytes[end] != '"') end += bytes[end] == '\\' ? 2 : 1;
            end = Math.Min(end + 1, bytes.Length);
        }
        string replacement = replacements[rng.NextInt(replacements.Length)];
        applied.Add($"{what} at {start}..{end} = {replacement[..Math.Min(20, replacement.Length)]}");
        return [.. bytes[..start], .. Encoding.UTF8.GetBytes(replacement), .. bytes[end..]];
    }
}
