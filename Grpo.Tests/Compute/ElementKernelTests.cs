// The per-element and gather kernels (embedding, SiLU, SwiGLU, RoPE) against the CPU reference ops,
// forward and backward, on ILGPU's CPU accelerator at tiny shapes.
using Grpo.Compute;
using Grpo.Compute.Kernels;
using Grpo.Ops;
using static Grpo.Tests.Compute.KernelTestHelpers;

namespace Grpo.Tests.Compute;

[Collection("cpu-accelerator")]
public class ElementKernelTests(CpuAcceleratorFixture fixture)
{
    private readonly Device device = fixture.Device;

    [Fact]
    public void EmbeddingByHand()
    {
        // table [[1, 2], [3, 4], [5, 6]], ids [2, 0, 2] -> [[5, 6], [1, 2], [5, 6]]; dy all ones -> dtable [[1, 1], [0, 0], [2, 2]]
        var (y, dTable) = EmbeddingKernels.Host.Run(device, [1, 2, 3, 4, 5, 6], 2, [2, 0, 2], [1, 1, 1, 1, 1, 1], new float[6]);
        Assert.Equal([5f, 6, 1, 2, 5, 6], y);
        Assert.Equal([1f, 1, 0, 0, 2, 2], dTable);
    }

    [Fact]
    public void EmbeddingGroupsPositionsByIdInOrder()
    {
        // ids [2, 0, 2, 2]: id 0 at [1], id 2 at [0, 2, 3] (increasing, the CPU's order of addition)
        var groups = EmbeddingKernels.GroupPositionsById([2, 0, 2, 2], 3);
        Assert.Equal([0, 2], groups.Ids);
        Assert.Equal([0, 1, 4], groups.Starts);
        Assert.Equal([1, 0, 2, 3], groups.Positions);
        Assert.Throws<ArgumentOutOfRangeException>(() => EmbeddingKernels.GroupPositionsById([3], 3));
    }

    [Fact]
    public void EmbeddingMatchesReferenceExactly()
    {
        var rng = new Random(5);
        var table = GradCheck.Random(rng, 1f, 7, 5);
        int[] ids = Enumerable.Range(0, 12).Select(_ => rng.Next(7)).ToArray();
        var dy = GradCheck.Random(rng, 1f, 12, 5).Data;
        var dStart = GradCheck.Random(rng, 1f, 7, 5).Data;
        var (y, dTable) = Reference(t => Op.Embedding(t, ids), table, dy, dStart);
        var (deviceY, deviceDTable) = EmbeddingKernels.Host.Run(device, table.Data, 5, ids, dy, dStart);
        Assert.Equal(y, deviceY);
        Assert.Equal(dTable, deviceDTable);   // same additions in the same order: bit for bit
    }

    [Fact]
    public void SiluByHand()
    {
        // silu(0) = 0, silu'(0) = 0.5; silu(1) = 0.7311, silu'(1) = 0.7311 * (1 + 0.2689) = 0.9277
        var (y, dx) = SiluKernels.Host.Silu(device, [0, 1], [1, 1], new float[2]);
        AssertClose([0f, 0.7310586f], y, 1e-6f);
        AssertClose([0.5f, 0.9276705f], dx, 1e-6f);
    }

    [Fact]
    public void SiluAndSwiGluMatchReference()
    {
        var rng = new Random(3);
        var x = GradCheck.Random(rng, 6f, 37);
        var up = Tensor.Parameter(GradCheck.Random(rng, 2f, 37).Data, 37);
        var dy = GradCheck.Random(rng, 1f, 37).Data;
        var dStart = GradCheck.Random(rng, 1f, 37).Data;
        var (y, dx) = Reference(Op.Silu, x, dy, dStart);
        var (deviceY, deviceDx) = SiluKernels.Host.Silu(device, x.Data, dy, dStart);
        AssertClose(y, deviceY, 1e-6f);
        AssertClose(dx, deviceDx, 1e-6f);

        var (swiglu, dGate) = Reference(gate => Op.SwiGlu(gate, up), x, dy, dStart);
        var (deviceSwiglu, deviceDGate, deviceDUp) = SiluKernels.Host.SwiGlu(device, x.Data, up.Data, dy, dStart, new float[37]);
        AssertClose(swiglu, deviceSwiglu, 1e-6f);
        AssertClose(dGate, deviceDGate, 1e-6f);
        AssertClose(up.Grad!, deviceDUp, 1e-6f);
    }

    [Fact]
    public void RopeByHand()
    {
        // D = 2, position 1: angle 1 rad, [1, 0] -> [cos 1, sin 1]; position 0 is the identity
        var (y, dx) = RopeKernels.Host.Run(device, [1, 0, 3, 4], 2, 1, 2, [1, 0], 10000f, [MathF.Cos(1), MathF.Sin(1), 0, 0], new float[4]);
        AssertClose([MathF.Cos(1), MathF.Sin(1), 3, 4], y, 1e-6f);
        AssertClose([1, 0, 0, 0], dx, 1e-6f);   // the backward rotates back
    }

    [Fact]
    public void RopeMatchesReference()
    {
        var rng = new Random(11);
        int B = 2, T = 3, H = 2, D = 8;
        var x = GradCheck.Random(rng, 1f, B, T, H, D);
        int[] positions = [0, 1, 2, 5, 6, 40];
        var dy = GradCheck.Random(rng, 1f, B, T, H, D).Data;
        var dStart = GradCheck.Random(rng, 1f, B, T, H, D).Data;
        var (y, dx) = Reference(t => Op.Rope(t, positions, 500f), x, dy, dStart);
        var (deviceY, deviceDx) = RopeKernels.Host.Run(device, x.Data, B * T, H, D, positions, 500f, dy, dStart);
        AssertClose(y, deviceY, 1e-6f);
        AssertClose(dx, deviceDx, 1e-6f);
    }
}
