// TransformerConfig: presets are consistent, and the Hugging Face config.json round trip.
using Grpo.Model;

namespace Grpo.Tests.Model;

public class TransformerConfigTests
{
    [Fact]
    public void PresetsAreValid()
    {
        foreach (var (name, config) in TransformerConfig.Presets)
        {
            config.Validate();
            Assert.True(config.HeadDim % 2 == 0, name);
        }
        // Tiny: 16 / 4 heads = head dim 4; two query heads share each of the two kv heads.
        Assert.Equal(4, TransformerConfig.Tiny.HeadDim);
    }

    [Fact]
    public void JsonRoundTripUsesHuggingFaceKeys()
    {
        var config = TransformerConfig.Tiny with { QkvBias = true, TiedEmbeddings = true, RopeTheta = 500000f, NormEps = 1e-6f };
        string json = config.ToJson();
        Assert.Contains("\"hidden_size\": 16", json);
        Assert.Contains("Qwen2ForCausalLM", json);
        Assert.Equal(config, TransformerConfig.FromJson(json));
        Assert.Equal(TransformerConfig.GpuMid, TransformerConfig.FromJson(TransformerConfig.GpuMid.ToJson()));
    }

    [Fact]
    public void ParameterCountOfTiny()
    {
        // Tiny: embed 32*16 = 512, lm_head 512; per layer q 256 + k 128 + v 128 + o 256 = 768,
        // mlp 3 * 16 * 32 = 1536, norms 32 -> 2336; two layers 4672; final norm 16. Total 5712.
        Assert.Equal(5712, TransformerConfig.Tiny.ParameterCount());
    }

    [Fact]
    public void UnsupportedConfigIsAClearError()
    {
        var e = Assert.Throws<ModelFormatException>(() => TransformerConfig.FromJson("""{"model_type":"gpt2","vocab_size":3}""", "m/config.json"));
        Assert.Contains("gpt2", e.Message);
        e = Assert.Throws<ModelFormatException>(() => TransformerConfig.FromJson("""{"model_type":"llama","hidden_size":16}"""));
        Assert.Contains("missing", e.Message);
    }
}
