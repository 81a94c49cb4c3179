// Checkpoints: a saved and loaded model gives identical logits; a training run resumed from a
// checkpoint continues exactly as if uninterrupted; a shape mismatch names the tensor.
using System.Text.Json.Nodes;
using Grpo.Model;
using Grpo.Ops;
using Grpo.Optim;
using Grpo.Sampling;

namespace Grpo.Tests.Model;

public sealed class CheckpointTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("grpo-checkpoint-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private static readonly int[] Tokens = [1, 5, 9, 2, 30, 7, 4, 4, 0, 13, 21, 3];

    private static Tensor Logits(Transformer model)
    {
        using var _ = Autograd.NoGrad();
        return model.Forward(Tokens, 2, 6);
    }

    [Fact]
    public void SavedAndLoadedModelGivesIdenticalLogits()
    {
        var model = new Transformer(TransformerConfig.Tiny with { QkvBias = true }, 42);
        Checkpoint.SaveModel(folder, model);
        var loaded = Checkpoint.LoadModel(folder);
        Assert.Equal(model.Config, loaded.Config);
        Assert.Equal(Logits(model).Data, Logits(loaded).Data);
    }

    [Fact]
    public void ResumedTrainingContinuesExactly()
    {
        // Run A: 4 steps straight. Run B: 2 steps, save, load into fresh objects, 2 more steps.
        // The weights, the optimizer step and the RNG draws after that must be identical.
        var config = TransformerConfig.Tiny;
        int[] targets = [5, 9, 2, 30, 7, 4, 4, 0, 13, 21, 3, 1];

        void TrainSteps(Transformer model, AdamW adam, Rng rng, int steps)
        {
            for (int s = 0; s < steps; s++)
            {
                adam.ZeroGrad();
                adam.LearningRate = 1e-2 * (1 + rng.NextFloat());   // the RNG takes part, so its state matters
                Autograd.Backward(Op.CrossEntropy(model.Forward(Tokens, 2, 6), targets));
                adam.Step();
            }
        }

        var modelA = new Transformer(config, 1);
        var adamA = new AdamW(modelA.Parameters, weightDecay: 0.1);
        var rngA = new Rng(99);
        TrainSteps(modelA, adamA, rngA, 4);

        var modelB = new Transformer(config, 1);
        var adamB = new AdamW(modelB.Parameters, weightDecay: 0.1);
        var rngB = new Rng(99);
        TrainSteps(modelB, adamB, rngB, 2);
        Checkpoint.Save(folder, modelB, adamB, rngB, new JsonObject { ["epoch"] = 3 });

        var resumed = Checkpoint.LoadModel(folder);
        var adamC = new AdamW(resumed.Parameters, weightDecay: 0.1);
        var rngC = new Rng(0);
        var extra = Checkpoint.LoadTrainingState(folder, adamC, rngC);
        Assert.Equal(3, extra!["epoch"]!.GetValue<int>());
        Assert.Equal(2, adamC.StepCount);
        TrainSteps(resumed, adamC, rngC, 2);

        Assert.Equal(adamA.StepCount, adamC.StepCount);
        Assert.Equal(rngA.State, rngC.State);
        for (int i = 0; i < modelA.Parameters.Count; i++)
            Assert.Equal(modelA.Parameters[i].Value.Data, resumed.Parameters[i].Value.Data);
    }

    [Fact]
    public void ShapeMismatchNamesTheTensor()
    {
        var model = new Transformer(TransformerConfig.Tiny, 1);
        Checkpoint.SaveModel(folder, model);
        // Claim 4 kv heads in config.json: k_proj should then be (16, 16), the file has (8, 16).
        File.WriteAllText(Path.Combine(folder, Checkpoint.ConfigFile), (TransformerConfig.Tiny with { KvHeads = 4 }).ToJson());
        var e = Assert.Throws<ModelFormatException>(() => Checkpoint.LoadModel(folder));
        Assert.Contains("model.layers.0.self_attn.k_proj.weight", e.Message);
        Assert.Contains("[8, 16]", e.Message);
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        var model = new Transformer(TransformerConfig.Tiny, 1);
        Checkpoint.SaveModel(folder, model);
        var weights = model.Parameters.Where(p => p.Name != "model.norm.weight");
        SafeTensors.Write(Path.Combine(folder, Checkpoint.ModelFile), weights);
        var e = Assert.Throws<ModelFormatException>(() => Checkpoint.LoadModel(folder));
        Assert.Contains("missing tensor 'model.norm.weight'", e.Message);
    }
}
