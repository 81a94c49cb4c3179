// Tensors resident on a device, end to end, against the CPU reference: the tiny model's forward and
// backward, a training step (loss, every gradient, AdamW), cached generation and a whole GRPO step,
// each run once on the CPU and once with the model on ILGPU's CPU accelerator (the same kernels a
// GPU runs, thread by simulated thread). `grpo check --device cuda` runs the same comparisons on a
// GPU at the small model's size.
using Grpo.Compute;
using Grpo.Model;
using Grpo.Ops;
using Grpo.Optim;
using Grpo.Rl;
using Grpo.Sampling;
using Grpo.Tasks;
using static Grpo.Tests.Compute.KernelTestHelpers;

namespace Grpo.Tests.Compute;

[Collection("cpu-accelerator")]
public class DeviceTensorTests(CpuAcceleratorFixture fixture)
{
    private readonly Device device = fixture.Device;

    private static readonly TransformerConfig Config = TransformerConfig.Tiny with { Layers = 1, MaxSeqLen = 24 };

    [Fact]
    public void HostDataOfADeviceTensorIsRefusedWithAReason()
    {
        var onDevice = new Tensor([1f, 2, 3, 4], 2, 2).To(device);
        var e = Assert.Throws<InvalidOperationException>(() => onDevice.Data);
        Assert.Contains("ToArray", e.Message);
        Assert.Equal([1f, 2, 3, 4], onDevice.ToArray());
        Assert.Equal([1f, 2, 3, 4], onDevice.To(Device.Cpu).Data);
        var mixed = Assert.Throws<ArgumentException>(() => Op.Add(onDevice, new Tensor([1f, 1], 2)));
        Assert.Contains("different devices", mixed.Message);
    }

    [Fact]
    public void AScopeReleasesWhatWasMadeInsideAndKeepsParametersAndTheirGradients()
    {
        var weight = new Tensor(DeviceArray.Upload(device, [1f, 2, 3, 4], scoped: false), 2, 2) { RequiresGrad = true };
        Tensor product;
        using (DeviceArray.Scope())
        {
            product = Op.MatMul(weight, weight);
            Autograd.Backward(Op.SumAll(product.To(Device.Cpu)));
        }
        Assert.Throws<ObjectDisposedException>(() => product.ToArray());
        // d sum(W W) / dW = 1 W^T + W^T 1 = [[3, 7], [3, 7]] + [[4, 4], [6, 6]] for W = [[1, 2], [3, 4]]
        Assert.Equal([7f, 11, 9, 13], weight.GradToArray()!);
        Assert.Equal([1f, 2, 3, 4], weight.ToArray());
        // A forward whose backward never runs (a skipped step) leaves nothing rented once its scope closes,
        // the buffers kept for the backward (the targets) included.
        var logits = new Tensor(DeviceArray.Upload(device, [0.5f, -1, 2, 0, 1, 3], scoped: false), 2, 3) { RequiresGrad = true };
        long before = device.Pool.BytesRented;
        using (DeviceArray.Scope())
            Op.TokenLogProbs(logits, [2, 0]);
        Assert.Equal(before, device.Pool.BytesRented);

        // The same index array is uploaded once and shared.
        int[] positions = [0, 1, 2, 3];
        device.Indices(positions);
        long rented = device.Pool.BytesRented;
        device.Indices((int[])positions.Clone());
        Assert.Equal(rented, device.Pool.BytesRented);
        Assert.Equal([0, 1, 2, 4], Device.DownloadArray(device.Indices([0, 1, 2, 4])));
    }

    [Fact]
    public void GradientsFlowBackThroughToAndReshape()
    {
        // loss = sum over the host copy of 3 * x (reshaped): d loss / dx = 3 everywhere, arriving on the device.
        var leaf = new Tensor(DeviceArray.Upload(device, [1f, -2, 0.5f, 4, 5, 6]), 2, 3) { RequiresGrad = true };
        var host = Op.Scale(leaf.Reshape(6), 3f).To(Device.Cpu);
        var loss = Op.SumAll(host);
        Autograd.Backward(loss);
        Assert.Equal(Enumerable.Repeat(3f, 6), leaf.GradToArray()!);
    }

    public static TheoryData<string> OpNames() => new()
    {
        "add", "add-bias", "sub", "sub-bias", "mul", "mul-bias", "scale", "exp", "log", "sum-axis0", "mean-axis1",
        "sum-all", "mean-all", "softmax", "log-softmax", "silu", "rmsnorm", "matmul", "matmul-transposed",
    };

    /// <summary>Every op's device path, forward and backward, against its CPU reference on a small input.</summary>
    [Theory]
    [MemberData(nameof(OpNames))]
    public void EachOpsDevicePathMatchesTheCpu(string name)
    {
        var rng = new Random(name.GetHashCode() & 0xffff);
        var x = GradCheck.Random(rng, 1f, 3, 4, 8);
        if (name == "log") x = new Tensor(x.Data.Select(v => Math.Abs(v) + 0.5f).ToArray(), x.Shape);
        var other = GradCheck.Random(rng, 1f, name.EndsWith("-bias") || name == "rmsnorm" ? [8] : name == "matmul" ? [8, 5] : name == "matmul-transposed" ? [5, 4] : [3, 4, 8]);
        Func<Tensor, Tensor, Tensor> op = name switch
        {
            "add" or "add-bias" => Op.Add,
            "sub" or "sub-bias" => Op.Sub,
            "mul" or "mul-bias" => Op.Mul,
            "scale" => (a, _) => Op.Scale(a, -0.75f),
            "exp" => (a, _) => Op.Exp(a),
            "log" => (a, _) => Op.Log(a),
            "sum-axis0" => (a, _) => Op.Sum(a, 0),
            "mean-axis1" => (a, _) => Op.Mean(a, 1),
            "sum-all" => (a, _) => Op.SumAll(a),
            "mean-all" => (a, _) => Op.MeanAll(a),
            "softmax" => (a, _) => Op.Softmax(a),
            "log-softmax" => (a, _) => Op.LogSoftmax(a),
            "silu" => (a, _) => Op.Silu(a),
            "rmsnorm" => (a, w) => Op.RmsNorm(a, w, 1e-5f),
            "matmul" => (a, w) => Op.MatMul(a, w),
            "matmul-transposed" => (a, w) => Op.MatMul(a, w, transposeA: true, transposeB: true),   // batch by batch: A transposed, W shared
            _ => throw new ArgumentException(name),
        };
        (float[] Y, float[] Dx, float[] Dother) Run(Device on)
        {
            var a = Tensor.Parameter((float[])x.Data.Clone(), x.Shape).To(on);
            var b = Tensor.Parameter((float[])other.Data.Clone(), other.Shape).To(on);
            var leafA = a; var leafB = b;
            if (!on.IsCpu)   // device leaves, so the gradients are read where they were formed
            {
                leafA = new Tensor(DeviceArray.Upload(on, x.Data), x.Shape) { RequiresGrad = true };
                leafB = new Tensor(DeviceArray.Upload(on, other.Data), other.Shape) { RequiresGrad = true };
            }
            var y = op(leafA, leafB);
            var dy = GradCheck.Random(new Random(7), 1f, y.Shape).Data;
            Autograd.Backward(y, dy);
            return (y.ToArray(), leafA.GradToArray() ?? new float[x.Size], leafB.GradToArray() ?? new float[other.Size]);
        }
        var expected = Run(Device.Cpu);
        var actual = Run(device);
        AssertClose(expected.Y, actual.Y, 1e-5f);
        AssertClose(expected.Dx, actual.Dx, 1e-5f);
        AssertClose(expected.Dother, actual.Dother, 1e-5f);
    }

    [Fact]
    public void ForwardAndBackwardOfTheModelMatchTheCpu()
    {
        foreach (var config in new[] { Config, Config with { QkvBias = true, TiedEmbeddings = true } })
        {
            var cpu = new Transformer(config, seed: 1);
            var gpu = cpu.To(device);
            var rng = new Random(2);
            int B = 2, T = 5;
            var tokens = Enumerable.Range(0, B * T).Select(_ => rng.Next(config.VocabSize)).ToArray();
            var targets = Enumerable.Range(0, B * T).Select(_ => rng.Next(config.VocabSize)).ToArray();
            var weights = Enumerable.Range(0, B * T).Select(i => i % 3 == 0 ? 0f : 1f).ToArray();

            var cpuLogits = cpu.Forward(tokens, B, T);
            var cpuLoss = Op.CrossEntropy(cpuLogits, targets, weights);
            var gpuLogits = gpu.Forward(tokens, B, T);
            var gpuLoss = Op.CrossEntropy(gpuLogits, targets, weights);
            AssertClose(cpuLogits.Data, gpuLogits.ToArray(), 1e-5f);
            Assert.Equal(cpuLoss.Item(), gpuLoss.Item(), 1e-5f);

            AssertClose(Op.RowEntropy(cpuLogits).Data, Op.RowEntropy(gpuLogits).Data, 1e-5f);

            Autograd.Backward(cpuLoss);
            Autograd.Backward(gpuLoss);
            for (int p = 0; p < cpu.Parameters.Count; p++)
            {
                var expected = cpu.Parameters[p].Value.Grad!;
                var actual = gpu.Parameters[p].Value.GradToArray()!;
                AssertClose(expected, actual, 1e-4f);
            }
        }
    }

    [Fact]
    public void TrainingStepsMatchTheCpu()
    {
        var cpu = new Transformer(Config, seed: 4);
        var gpu = cpu.To(device);
        var cpuOptimizer = new AdamW(cpu.Parameters, 1e-2);
        var gpuOptimizer = new AdamW(gpu.Parameters, 1e-2);
        var cpuTrainer = new SftTrainer(cpu, cpuOptimizer, LrSchedule.Constant(1e-2f, 0), padToken: 0, maxGradNorm: 0.05f);
        var gpuTrainer = new SftTrainer(gpu, gpuOptimizer, LrSchedule.Constant(1e-2f, 0), padToken: 0, maxGradNorm: 0.05f);
        int[][] prompts = [[1, 2, 3], [4, 5]], completions = [[6, 7], [8, 9, 10]];
        for (int step = 0; step < 2; step++)
        {
            var a = cpuTrainer.Step(prompts, completions);
            var b = gpuTrainer.Step(prompts, completions);
            Assert.Equal(a.Loss, b.Loss, 1e-5f);
            Assert.Equal(a.GradNorm, b.GradNorm, 1e-4f);   // clipped: the norm is above 0.05
        }
        for (int p = 0; p < cpu.Parameters.Count; p++)
        {
            AssertClose(cpu.Parameters[p].Value.Data, gpu.Parameters[p].Value.ToArray(), 1e-4f);
            AssertClose(cpuOptimizer.Slots[p].M.Data, gpuOptimizer.Slots[p].M.ToArray(), 1e-4f);
            AssertClose(cpuOptimizer.Slots[p].V.Data, gpuOptimizer.Slots[p].V.ToArray(), 1e-4f);
        }
    }

    [Theory]
    [InlineData(0f, 0, 0f)]      // greedy: argmax on the device
    [InlineData(1f, 0, 0f)]      // temperature: the device draws with the host's coins
    [InlineData(0.7f, 0, 0.05f)] // temperature and min-p
    [InlineData(1f, 5, 0f)]      // top-k: no kernel, the logits come to the host
    public void CachedGenerationMatchesTheCpu(float temperature, int topK, float minP)
    {
        var cpu = new Transformer(Config, seed: 5);
        var gpu = cpu.To(device);
        int[][] prompts = [[1, 2, 3, 4], [5, 6]];
        var options = new GenerationOptions(6, new SamplerOptions(temperature, topK, MinP: minP), EosToken: 3);
        var expected = Generator.Generate(cpu, prompts, 2, options, new Rng(1));
        var actual = Generator.Generate(gpu, prompts, 2, options, new Rng(1));
        for (int r = 0; r < expected.Length; r++)
        {
            Assert.Equal(expected[r].Tokens, actual[r].Tokens);
            AssertClose(expected[r].LogProbs, actual[r].LogProbs, 1e-5f);
        }
    }

    [Fact]
    public void ACheckpointOfADeviceModelRoundTripsThroughTheDisk()
    {
        // Train a step on the device, checkpoint it (weights, AdamW's moments, step, RNG), load it into a
        // fresh device model and optimizer: every tensor comes back bit for bit, and the CPU can read it too.
        var gpu = new Transformer(Config, seed: 8).To(device);
        var optimizer = new AdamW(gpu.Parameters, 1e-2);
        new SftTrainer(gpu, optimizer, LrSchedule.Constant(1e-2f, 0), padToken: 0).Step([[1, 2, 3]], [[4, 5]]);
        string runDir = Path.Combine(Path.GetTempPath(), "grpo-device-checkpoint-" + Guid.NewGuid().ToString("N"));
        try
        {
            string folder = CheckpointStore.Save(runDir, 1, gpu, optimizer, new Rng(3), new System.Text.Json.Nodes.JsonObject());
            var loaded = new Transformer(Config, seed: 99).To(device);
            var loadedOptimizer = new AdamW(loaded.Parameters, 1e-2);
            var rng = new Rng(0);
            CheckpointStore.Load(folder, loaded, loadedOptimizer, rng);
            Assert.Equal(1, loadedOptimizer.StepCount);
            Assert.Equal(new Rng(3).State, rng.State);
            var onCpu = Checkpoint.LoadModel(folder);
            for (int p = 0; p < gpu.Parameters.Count; p++)
            {
                Assert.Equal(gpu.Parameters[p].Value.ToArray(), loaded.Parameters[p].Value.ToArray());
                Assert.Equal(gpu.Parameters[p].Value.ToArray(), onCpu.Parameters[p].Value.Data);
                Assert.Equal(optimizer.Slots[p].M.ToArray(), loadedOptimizer.Slots[p].M.ToArray());
                Assert.Equal(optimizer.Slots[p].V.ToArray(), loadedOptimizer.Slots[p].V.ToArray());
            }
        }
        finally { if (Directory.Exists(runDir)) Directory.Delete(runDir, recursive: true); }
    }

    /// <summary>A one-character answer task with a short prompt (the arithmetic prompts are long for the CPU accelerator).</summary>
    private sealed class LowercaseTask : IRlTask
    {
        public string Name => "lowercase";
        public Problem SampleTraining(Rng rng) => new("Say:", "0", "a");
        public IReadOnlyList<Problem> HeldOut(int count) => [];
        public string? ExtractAnswer(string completion) => null;
        public double Reward(Problem problem, string completion) => completion.Length > 0 && char.IsAsciiLetterLower(completion[0]) ? 1 : 0;
    }

    [Fact]
    public void AGrpoStepMatchesTheCpu()
    {
        var tokenizer = new CharTokenizer(ArithmeticTask.Alphabet);
        var config = Config with { VocabSize = tokenizer.VocabSize };
        var cpu = new Transformer(config, seed: 6);
        var gpu = cpu.To(device);
        var settings = new GrpoSettings
        {
            QuestionsPerStep = 2, GroupSize = 4, MaxNewTokens = 4, Mu = 2, Beta = 0.04f, LearningRate = 1e-2f, Seed = 7,
            DynamicSampling = false, MaskTruncated = false,
        };
        var task = new LowercaseTask();
        var a = new GrpoTrainer(cpu, task, tokenizer, settings, Rewards.ForTask(task)).Step();
        var b = new GrpoTrainer(gpu, task, tokenizer, settings, Rewards.ForTask(task)).Step();
        Assert.Equal(a.RewardMean, b.RewardMean);
        Assert.Equal(a.CompletionLengthMean, b.CompletionLengthMean);
        Assert.Equal(a.Loss, b.Loss, 1e-5);
        Assert.Equal(a.GradNorm, b.GradNorm, 1e-4);
        Assert.Equal(a.Kl, b.Kl, 1e-6);
        for (int p = 0; p < cpu.Parameters.Count; p++)
            AssertClose(cpu.Parameters[p].Value.Data, gpu.Parameters[p].Value.ToArray(), 1e-4f);
    }
}
