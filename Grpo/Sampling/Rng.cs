// A small seeded random generator of our own (SplitMix64 state step, as in llama2.c's habit of a
// private RNG): the same seed gives the same numbers on every run, machine and .NET version, which
// System.Random does not promise. Used for initialisation, sampling and task generation.
// State is one ulong, so a checkpoint can save and restore it exactly.
namespace Grpo.Sampling;

public sealed class Rng
{
    public ulong State { get; set; }

    public Rng(ulong seed) { State = seed; }

    /// <summary>A new generator whose stream is independent of this one's (for a sub-task).</summary>
    public Rng Fork() => new(NextULong());

    public ulong NextULong()
    {
        // SplitMix64 (Steele, Lea, Flood 2014).
        ulong z = State += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1), with 24 random bits (every float in the range is reachable evenly).</summary>
    public float NextFloat() => (NextULong() >> 40) * (1.0f / (1 << 24));

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextULong() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform integer in [0, n), without modulo bias (Lemire's multiply-shift with rejection).</summary>
    public int NextInt(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), "n must be positive");
        ulong bound = (ulong)n;
        while (true)
        {
            ulong x = NextULong() >> 32;
            ulong product = x * bound;
            if ((uint)product >= (uint)((0x1_0000_0000UL - bound) % bound)) return (int)(product >> 32);
        }
    }

    /// <summary>Uniform integer in [low, high] inclusive.</summary>
    public int NextInt(int low, int high) => low + NextInt(high - low + 1);

    /// <summary>Standard normal draw (Box-Muller).</summary>
    public float NextGaussian()
    {
        double u1 = 1.0 - NextDouble(), u2 = NextDouble();
        return (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
    }
}
