// `grpo bench --peer FILE`: each figure's ratio to the PyTorch peer's, matched by figure name and size.
// The peer lines below are the shape of torch_gpu_anchor.py's output (values made round by hand).
using Grpo.Cli;

namespace Grpo.Tests.Cli;

public class BenchPeerTests
{
    private static List<System.Text.Json.Nodes.JsonObject> Peers(params string[] lines)
    {
        string path = Path.Combine(Path.GetTempPath(), $"grpo-peer-{Guid.NewGuid():N}.log");
        File.WriteAllLines(path, lines);
        try { return BenchPeer.Read(path); }
        finally { File.Delete(path); }
    }

    private static readonly string[] GpuPeer =
    [
        """{"fig": "sgemm_fp32", "n": 4096, "tflops": 50.0}""",
        "some warning a library printed",
        """{"fig": "gemm_bf16", "n": 4096, "tflops": 800.0}""",
        """{"fig": "copy_bw", "gbps": 4000.0}""",
        """{"fig": "train_step_fp32", "compiled": false, "params": 3475712, "batch": 64, "seq": 128, "tok_per_s": 500000.0}""",
        """{"fig": "train_step_fp32", "compiled": true, "params": 3475712, "batch": 64, "seq": 128, "tok_per_s": 1000000.0}""",
        """{"fig": "generate_hf", "batch": 64, "prompt": 32, "new": 96, "new_tok_per_s": 10000.0}""",
    ];

    [Fact]
    public void RatiosByHand()
    {
        var peers = Peers(GpuPeer);
        var sgemm = new Dictionary<string, object> { ["fig"] = "sgemm_fp32", ["n"] = 4096, ["tflops"] = 25.0 };
        var add = new Dictionary<string, object> { ["fig"] = "elementwise", ["op"] = "add", ["gbps"] = 3600.0 };
        var train = new Dictionary<string, object> { ["fig"] = "train_step_fp32", ["params"] = 3475712, ["tok_per_s"] = 400000.0 };
        var generate = new Dictionary<string, object> { ["fig"] = "generate", ["new_tok_per_s"] = 60000.0 };
        var attention = new Dictionary<string, object> { ["fig"] = "attention", ["forward_us"] = 33.0 };
        foreach (var figure in new[] { sgemm, add, train, generate, attention }) BenchPeer.AddRatio(figure, peers);
        Assert.Equal(0.5, sgemm["ratio"]);            // 25 / 50
        Assert.Equal(0.9, add["ratio"]);              // 3600 / 4000 (device copy)
        Assert.Equal(0.8, train["ratio"]);            // 400k / 500k eager
        Assert.Equal(0.4, train["ratio_compiled"]);   // 400k / 1M compiled
        Assert.Equal(6.0, generate["ratio"]);         // 60k / 10k
        Assert.False(attention.ContainsKey("ratio"));
    }

    [Fact]
    public void AFigureOfAnotherSizeHasNoRatio()
    {
        var mid = new Dictionary<string, object> { ["fig"] = "train_step_fp32", ["params"] = 134105856, ["tok_per_s"] = 18000.0 };
        BenchPeer.AddRatio(mid, Peers(GpuPeer));
        Assert.False(mid.ContainsKey("ratio"));
    }

    [Fact]
    public void AFileWithNoFiguresIsRefusedInOneLine()
    {
        var error = Assert.Throws<ArgumentException>(() => Peers("not json", ""));
        Assert.Contains("no figures", error.Message);
        Assert.Contains("not found", Assert.Throws<ArgumentException>(() => BenchPeer.Read("/no/such/peer.log")).Message);
    }
}
