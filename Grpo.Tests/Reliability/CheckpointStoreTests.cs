// The checkpoint store: Newest finds the last complete checkpoint and passes over a damaged or
// unfinished one (saying why); resume restores weights, AdamW moments and the RNG bit for bit, so
// training continued from a checkpoint is the run that never stopped; retention keeps the last K.
using System.Text.Json.Nodes;
using Grpo.Model;
using Grpo.Ops;
using Grpo.Optim;
using Grpo.Sampling;

namespace Grpo.Tests.Reliability;

public sealed class CheckpointStoreTests : IDisposable
{
    private readonly string runDir = Directory.CreateTempSubdirectory("grpo-store-").FullName;

    public void Dispose() => Directory.Delete(runDir, recursive: true);

    private static readonly int[] Tokens = [1, 5, 9, 2, 30, 7, 4, 4, 0, 13, 21, 3];
    private static readonly int[] Targets = [5, 9, 2, 30, 7, 4, 4, 0, 13, 21, 3, 1];

    /// <summary>A model, its optimizer and the run's RNG: what a checkpoint holds.</summary>
    private sealed class Run
    {
        public Transformer Model { get; }
        public AdamW Optimizer { get; }
        public Rng Rng { get; }

        public Run(ulong modelSeed, ulong rngSeed)
        {
            Model = new Transformer(TransformerConfig.Tiny, modelSeed);
            Optimizer = new AdamW(Model.Parameters, weightDecay: 0.1);
            Rng = new Rng(rngSeed);
        }

        public static Run Fresh() => new(modelSeed: 1, rngSeed: 99);

        /// <summary>A few AdamW steps of next-token cross-entropy, with the RNG taking part (it sets the learning rate).</summary>
        public void Train(int steps)
        {
            for (int s = 0; s < steps; s++)
            {
                Optimizer.ZeroGrad();
                Optimizer.LearningRate = 1e-2 * (1 + Rng.NextFloat());
                Autograd.Backward(Op.CrossEntropy(Model.Forward(Tokens, 2, 6), Targets));
                Optimizer.Step();
            }
        }
    }

    private Run SaveThree()
    {
        var run = Run.Fresh();
        foreach (int step in new[] { 10, 20, 30 })
        {
            run.Train(1);
            CheckpointStore.Save(runDir, step, run.Model, run.Optimizer, run.Rng, new JsonObject { ["step"] = step });
        }
        return run;
    }

    [Fact]
    public void NewestIsTheLastSaved()
    {
        SaveThree();
        var found = CheckpointStore.Newest(runDir);
        Assert.Equal(30, found.Step);
        Assert.Equal(CheckpointStore.FolderFor(runDir, 30), found.Path);
        Assert.Empty(found.Skipped);
        Assert.Equal(30, CheckpointStore.StepOf(found.Path!));
        // Five files, no temporary ones left: model, config, optimizer, trainer state, manifest.
        Assert.Equal(5, Directory.GetFiles(found.Path!).Length);
        Assert.Equal("step-000030", Path.GetFileName(found.Path));
    }

    [Fact]
    public void NoCheckpointIsSaidPlainly()
    {
        var found = CheckpointStore.Newest(runDir);
        Assert.Null(found.Path);
        Assert.Equal(-1, found.Step);
        Assert.Empty(found.Skipped);
    }

    [Fact]
    public void TruncatedFileInNewestFallsBackToThePrevious()
    {
        SaveThree();
        string weights = Path.Combine(CheckpointStore.FolderFor(runDir, 30), Checkpoint.ModelFile);
        long length = new FileInfo(weights).Length;
        using (var stream = new FileStream(weights, FileMode.Open)) stream.SetLength(length / 2);

        var found = CheckpointStore.Newest(runDir);
        Assert.Equal(20, found.Step);
        Assert.Equal($"step-000030: model.safetensors is {length / 2} bytes, the manifest says {length}", Assert.Single(found.Skipped));
    }

    [Fact]
    public void MissingManifestFallsBackToThePrevious()
    {
        SaveThree();
        File.Delete(Path.Combine(CheckpointStore.FolderFor(runDir, 30), CheckpointStore.ManifestFile));
        var found = CheckpointStore.Newest(runDir);
        Assert.Equal(20, found.Step);
        Assert.Contains("step-000030: no manifest.json", Assert.Single(found.Skipped));
    }

    [Fact]
    public void FolderOfAKilledWriterIsIgnoredAndCleanedUpByTheNextSave()
    {
        var run = SaveThree();
        // What a writer killed mid-way leaves: a temporary folder with some files and no manifest.
        string partial = CheckpointStore.FolderFor(runDir, 40) + SafeFile.TempMarker + "1a2b3c4d";
        Directory.CreateDirectory(partial);
        File.Copy(Path.Combine(CheckpointStore.FolderFor(runDir, 30), Checkpoint.ModelFile), Path.Combine(partial, Checkpoint.ModelFile));

        var found = CheckpointStore.Newest(runDir);
        Assert.Equal(30, found.Step);
        Assert.Equal("step-000040.tmp-1a2b3c4d: an unfinished write (a writer was stopped), ignored", Assert.Single(found.Skipped));

        CheckpointStore.Save(runDir, 40, run.Model, run.Optimizer, run.Rng);
        Assert.False(Directory.Exists(partial));
        Assert.Equal(40, CheckpointStore.Newest(runDir).Step);
    }

    [Fact]
    public void ResumeRestoresWeightsMomentsAndRngBitForBit()
    {
        var original = SaveThree();
        var resumed = new Run(modelSeed: 12345, rngSeed: 0);   // different weights and RNG until loaded

        var found = CheckpointStore.Newest(runDir);
        var extra = CheckpointStore.Load(found.Path!, resumed.Model, resumed.Optimizer, resumed.Rng);

        Assert.Equal(30, extra!["step"]!.GetValue<int>());
        AssertSameBits(original, resumed);

        // And the next steps are the ones the uninterrupted run takes.
        original.Train(3);
        resumed.Train(3);
        AssertSameBits(original, resumed);
    }

    private static void AssertSameBits(Run expected, Run actual)
    {
        Assert.Equal(expected.Rng.State, actual.Rng.State);
        Assert.Equal(expected.Optimizer.StepCount, actual.Optimizer.StepCount);
        for (int i = 0; i < expected.Model.Parameters.Count; i++)
        {
            // Compared as bit patterns: -0 vs 0 or two NaN payloads would pass a float comparison.
            Assert.Equal(Bits(expected.Model.Parameters[i].Value.Data), Bits(actual.Model.Parameters[i].Value.Data));
            Assert.Equal(Bits(expected.Optimizer.Slots[i].M.Data), Bits(actual.Optimizer.Slots[i].M.Data));
            Assert.Equal(Bits(expected.Optimizer.Slots[i].V.Data), Bits(actual.Optimizer.Slots[i].V.Data));
        }
    }

    private static int[] Bits(float[] values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();

    [Fact]
    public void RetentionKeepsTheLastK()
    {
        var run = Run.Fresh();
        foreach (int step in new[] { 1, 2, 3, 4 })
            CheckpointStore.Save(runDir, step, run.Model, run.Optimizer, run.Rng, keepLast: 2);
        var left = Directory.GetDirectories(Path.Combine(runDir, CheckpointStore.CheckpointsFolder)).Select(Path.GetFileName).Order();
        Assert.Equal(["step-000003", "step-000004"], left);
    }

    [Fact]
    public void SavingAStepAgainReplacesIt()
    {
        // A run resumed from step 20 after step 30 was damaged reaches step 30 again.
        var run = SaveThree();
        File.Delete(Path.Combine(CheckpointStore.FolderFor(runDir, 30), CheckpointStore.ManifestFile));
        run.Train(1);
        CheckpointStore.Save(runDir, 30, run.Model, run.Optimizer, run.Rng);
        var found = CheckpointStore.Newest(runDir);
        Assert.Equal(30, found.Step);
        Assert.Empty(found.Skipped);
        Assert.Single(Directory.GetDirectories(Path.Combine(runDir, CheckpointStore.CheckpointsFolder)), d => d.EndsWith("step-000030"));
    }

    [Fact]
    public void LoadingIntoAModelOfAnotherShapeIsRefused()
    {
        SaveThree();
        var other = new Transformer(TransformerConfig.Tiny with { FfnDim = 48 }, 1);
        var e = Assert.Throws<ModelFormatException>(() =>
            CheckpointStore.Load(CheckpointStore.FolderFor(runDir, 30), other, new AdamW(other.Parameters), new Rng(0)));
        Assert.Contains("saved from a model with", e.Message);
        Assert.Contains("FfnDim = 32", e.Message);
    }
}
