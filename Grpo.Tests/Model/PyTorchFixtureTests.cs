// Our transformer, loss, backward and AdamW against PyTorch, an outside reference (llm.c's test_gpt2 habit).
//
// Fixtures/model_fixture.safetensors is made by Fixtures/make_model_fixture.py: the same decoder in
// plain PyTorch (Qwen2 shape: Tiny sizes with QKV bias, GQA 4 query heads over 2 kv heads), one
// batch of 2 x 8 tokens whose second row is left-padded by two, computed in float64. We load its
// weights and require, per tensor (rel = max |ours - torch| / max |torch|):
//   logits and loss within 1e-4 relative; every parameter gradient within 1e-3 relative (plus 1e-6
//   absolute, for a gradient that is nearly zero everywhere); the losses after each of 10 AdamW steps
//   (lr 1e-2, weight decay 0.1 on rank >= 2) within 1e-4 relative.
// Each comparison is printed (max abs, rel, OK / NOT OK) to the test output.
using Grpo.Model;
using Grpo.Ops;
using Grpo.Optim;
using Xunit.Abstractions;

namespace Grpo.Tests.Model;

public sealed class PyTorchFixtureTests(ITestOutputHelper output)
{
    private const string FixtureName = "model_fixture.safetensors";

    /// <summary>The fixture in the source tree, found by walking up from the test binary.</summary>
    private static string? FindFixture()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "Grpo.Tests", "Fixtures", FixtureName);
            if (File.Exists(candidate)) return candidate;
            candidate = Path.Combine(dir.FullName, "Fixtures", FixtureName);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    [Fact]
    public void LogitsLossGradientsAndTenAdamWStepsMatchPyTorch()
    {
        string? path = FindFixture();
        Assert.True(path != null, $"fixture missing: run python3 Grpo.Tests/Fixtures/make_model_fixture.py (torch + safetensors) to create Grpo.Tests/Fixtures/{FixtureName}");
        using var fixture = new SafeTensorsReader(path!);
        var config = TransformerConfig.FromJson(fixture.Metadata["config"], path + " config");
        output.WriteLine($"config: {config}");

        var model = new Transformer(config, seed: 0);
        foreach (var (name, value) in model.Parameters)
        {
            var stored = fixture.Read(name);
            Assert.Equal(value.Shape, stored.Shape);
            stored.Data.CopyTo(value.Data, 0);
        }
        var idsTensor = fixture.Read("input_ids");
        int B = idsTensor.Dim(0), T = idsTensor.Dim(1), V = config.VocabSize;
        int[] ids = idsTensor.Data.Select(x => (int)x).ToArray();
        bool[] keyMask = fixture.Read("key_mask").Data.Select(x => x != 0).ToArray();
        int[] positions = fixture.Read("positions").Data.Select(x => (int)x).ToArray();
        // Next-token targets over all B*T positions; the last position of each row has no target (weight 0).
        var pairWeights = fixture.Read("loss_weights").Data;   // (B, T-1)
        var targets = new int[B * T];
        var weights = new float[B * T];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T - 1; t++)
            {
                targets[b * T + t] = ids[b * T + t + 1];
                weights[b * T + t] = pairWeights[b * (T - 1) + t];
            }
        Tensor Loss() => Op.CrossEntropy(model.Forward(ids, B, T, keyMask, positions), targets, weights);

        bool allOk = true;
        void Compare(string name, ReadOnlySpan<float> ours, ReadOnlySpan<float> torch, double rtol, double atol = 0)
        {
            Assert.Equal(torch.Length, ours.Length);
            double maxAbs = 0, maxRef = 0;
            for (int i = 0; i < ours.Length; i++)
            {
                maxAbs = Math.Max(maxAbs, Math.Abs((double)ours[i] - torch[i]));
                maxRef = Math.Max(maxRef, Math.Abs((double)torch[i]));
            }
            double rel = maxRef > 0 ? maxAbs / maxRef : maxAbs;
            bool ok = maxAbs <= rtol * maxRef + atol && double.IsFinite(maxAbs);
            allOk &= ok;
            output.WriteLine($"{name,-48} max abs {maxAbs:E2}  rel {rel:E2}  {(ok ? "OK" : "NOT OK")}");
        }

        var logits = model.Forward(ids, B, T, keyMask, positions);
        Compare("logits", logits.Data, fixture.Read("logits").Data, 1e-4);
        var loss = Op.CrossEntropy(logits, targets, weights);
        Compare("loss", [loss.Item()], fixture.Read("loss").Data, 1e-4);
        Autograd.Backward(loss);
        foreach (var (name, value) in model.Parameters)
            Compare("grad." + name, value.Grad!, fixture.Read("grad." + name).Data, 1e-3, atol: 1e-6);

        var adam = new AdamW(model.Parameters, learningRate: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1);
        var losses = new float[10];
        for (int step = 0; step < losses.Length; step++)
        {
            adam.ZeroGrad();
            Autograd.Backward(Loss());
            adam.Step();
            using (Autograd.NoGrad()) losses[step] = Loss().Item();
        }
        var torchLosses = fixture.Read("adamw_losses").Data;
        for (int step = 0; step < losses.Length; step++)
            Compare($"loss after AdamW step {step + 1} ({losses[step]:F6} vs {torchLosses[step]:F6})", [losses[step]], [torchLosses[step]], 1e-4);

        Assert.True(allOk, "some tensors differ from PyTorch beyond tolerance: see the test output");
    }
}
