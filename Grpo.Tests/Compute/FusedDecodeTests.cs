// The fused decode step (Model/Transformer.FusedDecode.cs, Compute/Kernels/DecodeKernels.cs) on ILGPU's
// CPU accelerator: a cached one-token step through the fused kernels gives the op-by-op path's logits
// and the CPU model's, step after step, with left-padded rows, a masked (finished) row and a gathered
// cache, for the tiny preset (GQA) and a Qwen2-like config (QKV bias, GQA 4:1); a step is Layers + 1
// launches; greedy generation on the device gives the CPU's tokens.
using Grpo.Compute;
using Grpo.Model;
using Grpo.Sampling;
using static Grpo.Tests.Compute.KernelTestHelpers;

namespace Grpo.Tests.Compute;

[Collection("cpu-accelerator")]
public class FusedDecodeTests(CpuAcceleratorFixture fixture)
{
    private readonly Device device = fixture.Device;

    private static readonly TransformerConfig Tiny = TransformerConfig.Tiny with { MaxSeqLen = 24 };
    private static readonly TransformerConfig Biased = new(VocabSize: 40, Dim: 32, Layers: 2, Heads: 4, KvHeads: 1, FfnDim: 48,
        MaxSeqLen: 24, QkvBias: true);

    /// <summary>A CPU model with seeded weights and, for QkvBias, nonzero biases (they start at 0).</summary>
    private static Transformer CpuModel(TransformerConfig config, ulong seed)
    {
        var model = new Transformer(config, seed);
        var rng = new Rng(seed + 100);
        foreach (var (name, value) in model.Parameters.Where(p => p.Name.EndsWith(".bias", StringComparison.Ordinal)))
            for (int i = 0; i < value.Size; i++) value.Data[i] = 0.1f * rng.NextGaussian();
        return model;
    }

    public static TheoryData<string> Configs() => new() { "tiny", "biased" };

    /// <summary>Groups of 64 threads (2 warps: a warp loops over the 4 heads) and of 256 (8 warps: 2 a head, AttendInParts).</summary>
    public static TheoryData<string, int> ConfigsAndGroups() => new() { { "tiny", 64 }, { "biased", 64 }, { "tiny", 256 }, { "biased", 256 } };

    [Theory]
    [MemberData(nameof(ConfigsAndGroups))]
    public void FusedStepsEqualTheOpByOpStepsAndTheCpu(string which, int groupThreads)
    {
        var config = which == "tiny" ? Tiny : Biased;
        using var _ = Autograd.NoGrad();
        var cpu = CpuModel(config, seed: 11);
        var gpu = cpu.To(device);
        gpu.DecodeGroupThreads = groupThreads;
        // Three rows, prompts of 4, 2 and 3 tokens left-padded to 4: positions count from the first real token.
        const int B = 3, prompt = 4, capacity = 12;
        int[] tokens = [1, 2, 3, 4, 0, 0, 5, 6, 0, 7, 8, 9];
        bool[] mask = [true, true, true, true, false, false, true, true, false, true, true, true];
        int[] positions = [0, 1, 2, 3, 0, 0, 0, 1, 0, 0, 1, 2];
        var caches = new[] { new KvCache(config, B, capacity), new KvCache(config, B, capacity, device), new KvCache(config, B, capacity, device) };
        gpu.FusedDecode = false;
        cpu.Forward(tokens, B, prompt, caches[0], mask, positions);
        gpu.Forward(tokens, B, prompt, caches[1], mask, positions);
        gpu.Forward(tokens, B, prompt, caches[2], mask, positions);

        int rows = B;
        int[] next = [positions[3] + 1, positions[7] + 1, positions[11] + 1];
        for (int step = 0; step < 4; step++)
        {
            if (step == 2)   // drop row 1 and take row 2 twice, as the generator compacts and the prefill fans out (row 1's masked key goes)
            {
                int[] keep = [0, 2, 2];
                for (int i = 0; i < caches.Length; i++) caches[i] = caches[i].Gather(keep);
                next = keep.Select(r => next[r]).ToArray();
                rows = keep.Length;
            }
            int[] stepTokens = Enumerable.Range(0, rows).Select(r => (step * 7 + r * 3 + 1) % config.VocabSize).ToArray();
            bool[] stepMask = Enumerable.Range(0, rows).Select(r => !(step == 1 && r == 1)).ToArray();   // a finished row's key is masked
            int[] stepPositions = (int[])next.Clone();

            var expected = cpu.Forward(stepTokens, rows, 1, caches[0], stepMask, stepPositions).Data;
            gpu.FusedDecode = false;
            Assert.False(gpu.UsesFusedDecode(1, caches[1]));
            var opByOp = gpu.Forward(stepTokens, rows, 1, caches[1], stepMask, stepPositions).ToArray();
            gpu.FusedDecode = true;
            Assert.True(gpu.UsesFusedDecode(1, caches[2]));
            long before = device.Kernels.Launches;
            var fused = gpu.Forward(stepTokens, rows, 1, caches[2], stepMask, stepPositions).ToArray();
            Assert.Equal(config.Layers + 1, device.Kernels.Launches - before);   // a kernel a layer, one for the head

            AssertClose(opByOp, fused, 1e-5f);
            AssertClose(expected, fused, 1e-5f);
            for (int r = 0; r < rows; r++) next[r]++;
        }
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void GreedyGenerationThroughTheFusedStepGivesTheCpuTokens(string which)
    {
        var config = which == "tiny" ? Tiny : Biased;
        var cpu = CpuModel(config, seed: 4);
        var gpu = cpu.To(device);
        Assert.True(gpu.FusedDecode);
        int[][] prompts = [[1, 2, 3, 4], [5, 6]];
        var options = new GenerationOptions(5, new SamplerOptions(Temperature: 0f));
        var expected = Generator.Generate(cpu, prompts, 2, options, new Rng(1));
        var actual = Generator.Generate(gpu, prompts, 2, options, new Rng(1));
        for (int r = 0; r < expected.Length; r++)
        {
            Assert.Equal(expected[r].Tokens, actual[r].Tokens);
            AssertClose(expected[r].LogProbs, actual[r].LogProbs, 1e-5f);
        }
    }

    [Fact]
    public void TheSmallGpuShapeIsFusedAndTheMidShapeIsNot()
    {
        // small: 4 (2 * 256^2 + 2 * 256 * 256 + 3 * 256 * 768) = 3.4 MB a layer; shared memory
        // 4 (32 + 4 * 256 + 2 * 256 + 768 + 8 * 128) = 13.4 KB for 8 warps and capacity 128
        Assert.True(Transformer.FusedDecodeFits(TransformerConfig.GpuSmall, warps: 8, capacity: 128));
        // mid: 4 (4 * 768^2 + 3 * 768 * 2048) = 28 MB a layer, past MaxFusedLayerBytes (8 MB)
        Assert.False(Transformer.FusedDecodeFits(TransformerConfig.GpuMid, warps: 8, capacity: 128));
        // a head dimension of 6 cannot be read as Float4
        Assert.False(Transformer.FusedDecodeFits(TransformerConfig.Tiny with { Dim = 24 }, warps: 8, capacity: 16));
    }
}
