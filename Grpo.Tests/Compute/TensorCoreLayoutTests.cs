// The tensor-core GEMM's index math checked on the CPU: the kernel's own layout functions (LayoutOf,
// LdmatrixAddresses, StoreOrigin) drive a simulation of what the PTX instructions do with them, as the
// PTX ISA describes them, so a wrong offset, swizzle or fragment order shows here, without a GPU:
//   copy     thread t moves 16 bytes of row t/8 + 32 i, k chunk t % 8, to CopyOffset + 4096 i;
//   ldmatrix.x4  lanes 8j .. 8j + 7 give the 8 row addresses of matrix j; lane l receives in register j
//            the two bf16 of matrix j's row l / 4 at columns 2 (l % 4) and 2 (l % 4) + 1;
//   mma.m16n8k16  lane l = 4g + q holds A (16 x 16) as [g][2q..], [g+8][2q..], [g][8+2q..], [g+8][8+2q..],
//            B (16 x 8, k by n) as [2q..][g], [8+2q..][g], and C as [g][2q], [g][2q+1], [g+8][2q], [g+8][2q+1].
// Inputs are small integers, so every sum is exact and the result must equal the plain product exactly.
using Grpo.Compute.Kernels;
using static Grpo.Compute.Kernels.TensorCoreGemmKernels;

namespace Grpo.Tests.Compute;

public class TensorCoreLayoutTests
{
    private const int M = 128, N = 128, K = 128; // one block tile, two k-tiles

    [Fact]
    public void SimulatedInstructionsOverTheKernelsOffsetsComputeTheProduct()
    {
        var rng = new Random(1);
        int[] a = Enumerable.Range(0, M * K).Select(_ => rng.Next(-4, 5)).ToArray();   // (M, K)
        int[] bt = Enumerable.Range(0, N * K).Select(_ => rng.Next(-4, 5)).ToArray();  // (N, K)
        var args = new TensorCoreGemmArgs { A = 0, Bt = 0, C = 0, M = M, N = N, K = K }; // byte addresses from 0
        var acc = new long[ThreadsPerGroup, 64];

        for (int k0 = 0; k0 < K; k0 += KTile)
        {
            var shared = FillStage(a, bt, args, k0);
            for (int warp = 0; warp < ThreadsPerGroup / 32; warp++)
                for (uint step = 0; step < KTile / 16; step++)
                    MmaStep(shared, args, warp, step, acc);
        }

        var c = new long?[M, N];
        for (int thread = 0; thread < ThreadsPerGroup; thread++)
        {
            var (row, column) = StoreOrigin(thread, 0, 0);
            for (int mi = 0; mi < 4; mi++)
                for (int ni = 0; ni < 4; ni++)
                    for (int e = 0; e < 4; e++)
                    {
                        int r = row + 16 * mi + (e / 2) * 8, col = column + 8 * ni + e % 2;
                        Assert.Null(c[r, col]); // each element of C is written once
                        c[r, col] = acc[thread, (mi * 4 + ni) * 4 + e];
                    }
        }
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                long expected = 0;
                for (int k = 0; k < K; k++) expected += a[i * K + k] * bt[j * K + k];
                Assert.Equal(expected, c[i, j]);
            }
    }

    /// <summary>One stage of shared memory (in bf16 slots) after every thread's copies of k-tile k0.</summary>
    private static int[] FillStage(int[] a, int[] bt, TensorCoreGemmArgs args, int k0)
    {
        var shared = Enumerable.Repeat(int.MinValue, StageBytes / 2).ToArray();
        for (int thread = 0; thread < ThreadsPerGroup; thread++)
        {
            var t = LayoutOf(thread, 0, 0, args);
            for (int i = 0; i < 4; i++)
                for (int e = 0; e < 8; e++)
                {
                    long aAt = (t.AChunk + i * t.ChunkRowStride + k0 * 2) / 2 + e, bAt = (t.BChunk + i * t.ChunkRowStride + k0 * 2) / 2 + e;
                    shared[(t.CopyOffset + 4096 * i) / 2 + e] = a[aAt];
                    shared[(OperandBytes + t.CopyOffset + 4096 * i) / 2 + e] = bt[bAt];
                }
        }
        Assert.DoesNotContain(int.MinValue, shared); // the copies cover the whole stage
        return shared;
    }

    /// <summary>What MmaStep does for one warp: six ldmatrix.x4, then 16 mma into the accumulators.</summary>
    private static void MmaStep(int[] shared, TensorCoreGemmArgs args, int warp, uint step, long[,] acc)
    {
        var addresses = new uint[32][];
        for (int lane = 0; lane < 32; lane++)
        {
            var (a0, a1, a2, a3, b0, b1) = LdmatrixAddresses(LayoutOf(warp * 32 + lane, 0, 0, args), 0, step);
            addresses[lane] = [a0, a1, a2, a3, b0, b1];
        }
        var fa = Enumerable.Range(0, 4).Select(op => Ldmatrix(shared, addresses, op)).ToArray();
        var fb = Enumerable.Range(4, 2).Select(op => Ldmatrix(shared, addresses, op)).ToArray();
        for (int mi = 0; mi < 4; mi++)
            for (int ni = 0; ni < 4; ni++)
            {
                var aTile = new int[16, 16];
                var bTile = new int[16, 8];
                for (int lane = 0; lane < 32; lane++)
                {
                    int g = lane / 4, q = lane % 4;
                    var ra = fa[mi][lane];
                    (aTile[g, 2 * q], aTile[g, 2 * q + 1]) = ra[0];
                    (aTile[g + 8, 2 * q], aTile[g + 8, 2 * q + 1]) = ra[1];
                    (aTile[g, 8 + 2 * q], aTile[g, 9 + 2 * q]) = ra[2];
                    (aTile[g + 8, 8 + 2 * q], aTile[g + 8, 9 + 2 * q]) = ra[3];
                    var rb = fb[ni / 2][lane]; // fb[2 ni], fb[2 ni + 1] = registers 2 (ni % 2) and + 1 of pair ni / 2
                    (bTile[2 * q, g], bTile[2 * q + 1, g]) = rb[2 * (ni % 2)];
                    (bTile[8 + 2 * q, g], bTile[9 + 2 * q, g]) = rb[2 * (ni % 2) + 1];
                }
                for (int lane = 0; lane < 32; lane++)
                {
                    int g = lane / 4, q = lane % 4;
                    (int Row, int Col)[] outputs = [(g, 2 * q), (g, 2 * q + 1), (g + 8, 2 * q), (g + 8, 2 * q + 1)];
                    for (int e = 0; e < 4; e++)
                        for (int k = 0; k < 16; k++)
                            acc[warp * 32 + lane, (mi * 4 + ni) * 4 + e] += aTile[outputs[e].Row, k] * bTile[k, outputs[e].Col];
                }
            }
    }

    /// <summary>ldmatrix.x4 of operand op: registers[lane][j] = the bf16 pair of matrix j lane receives.</summary>
    private static (int, int)[][] Ldmatrix(int[] shared, uint[][] addresses, int op)
    {
        var registers = new (int, int)[32][];
        for (int lane = 0; lane < 32; lane++)
        {
            int g = lane / 4, q = lane % 4;
            registers[lane] = new (int, int)[4];
            for (int j = 0; j < 4; j++)
            {
                uint row = addresses[8 * j + g][op];
                Assert.Equal(0u, row % 16); // ldmatrix rows are 16-byte aligned
                registers[lane][j] = (shared[row / 2 + 2 * q], shared[row / 2 + 2 * q + 1]);
            }
        }
        return registers;
    }

    [Fact]
    public void LdmatrixPhasesAreFreeOfBankConflicts()
    {
        // Shared memory has 32 banks of 4 bytes; ldmatrix reads one 8 x 16-byte matrix per phase, which is
        // conflict free when those 8 rows cover all 32 banks. Unswizzled, rows 128 bytes apart share 4 banks.
        var args = new TensorCoreGemmArgs { M = M, N = N, K = K };
        for (int warp = 0; warp < ThreadsPerGroup / 32; warp++)
            for (uint step = 0; step < KTile / 16; step++)
            {
                var addresses = Enumerable.Range(0, 32).Select(lane =>
                {
                    var (a0, a1, a2, a3, b0, b1) = LdmatrixAddresses(LayoutOf(warp * 32 + lane, 0, 0, args), 0, step);
                    return new[] { a0, a1, a2, a3, b0, b1 };
                }).ToArray();
                for (int op = 0; op < 6; op++)
                    for (int j = 0; j < 4; j++)
                    {
                        var banks = Enumerable.Range(0, 8).SelectMany(r => Enumerable.Range(0, 4).Select(w => (addresses[8 * j + r][op] / 4 + w) % 32)).ToHashSet();
                        Assert.Equal(32, banks.Count);
                    }
            }
    }
}
