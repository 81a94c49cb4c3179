// `grpo bench --peer FILE`: the ratio of each of our figures to the PyTorch peer's, from the peer
// script's output (shared/bench/torch_cpu_anchor.py or torch_gpu_anchor.py, one JSON object a line),
// so that a figure and its ratio come from one place. Which peer figure answers which of ours, and by
// which number:
//   cpu_sgemm (n)                -> cpu_sgemm (same n), gflops
//   cpu_train_step               -> cpu_train_step, tok_per_s
//   cpu_generate                 -> cpu_generate, new_tok_per_s
//   sgemm_fp32 and its versions and layouts (n) -> sgemm_fp32 (same n), tflops (cuBLAS)
//   gemm_bf16, gemm_bf16_v1 (n)   -> gemm_bf16 (same n), tflops (cuBLAS)
//   elementwise, column_sum      -> copy_bw, gbps (device copy: the bandwidth ceiling)
//   train_step_fp32 (params)     -> train_step_fp32 (same params), tok_per_s: eager, and compiled
//                                   when the peer file has it (ratio_compiled)
//   train_step_bf16 (params)     -> the same fp32 peer (the issue allows bf16 matmuls as an option; the
//                                   peer's step stays fp32)
//   generate and its variants    -> generate_hf, new_tok_per_s (transformers' generate)
//   (generate_unfused, generate_fused_N, generate_spread)
// Figures with no peer (attention, launch, op costs) are printed as they are.
// Tests: Grpo.Tests/Cli/BenchPeerTests.cs.
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Grpo.Cli;

public static class BenchPeer
{
    /// <summary>The peer's figures, one JSON object a line; ArgumentException (one line) for a missing or malformed file.</summary>
    public static List<JsonObject> Read(string path)
    {
        if (!File.Exists(path)) throw new ArgumentException($"--peer: file '{path}' not found");
        var figures = new List<JsonObject>();
        int lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                if (JsonNode.Parse(line) is JsonObject figure && figure["fig"] is JsonValue) figures.Add(figure);
            }
            catch (JsonException)
            {
                // The peer scripts print warnings between their JSON lines: lines that are not figures are skipped.
            }
        }
        if (figures.Count == 0) throw new ArgumentException($"--peer: no figures (JSON lines with \"fig\") in '{path}' ({lineNumber} lines)");
        return figures;
    }

    /// <summary>Adds "peer" and "ratio" (ours / peer) to a figure that has a peer, and "peer_compiled"/"ratio_compiled" where one exists.</summary>
    public static void AddRatio(Dictionary<string, object> figure, IReadOnlyList<JsonObject> peers)
    {
        string name = (string)figure["fig"];
        var (peerName, metric, key) = name switch
        {
            "cpu_sgemm" => ("cpu_sgemm", "gflops", "n"),
            "cpu_train_step" => ("cpu_train_step", "tok_per_s", null),
            "cpu_generate" => ("cpu_generate", "new_tok_per_s", null),
            "sgemm_fp32" or "sgemm_fp32_v1" or "sgemm_fp32_v2" or "sgemm_fp32_v3" or "sgemm_fp32_v3_nt" or "sgemm_fp32_v3_tn" or "sgemm_fp32_nt" or "sgemm_fp32_v4" or "sgemm_fp32_v4_nt" or "sgemm_fp32_v4_tn" => ("sgemm_fp32", "tflops", "n"),
            "gemm_bf16" or "gemm_bf16_v1" => ("gemm_bf16", "tflops", "n"),
            "elementwise" or "column_sum" => ("copy_bw", "gbps", null),
            "train_step_fp32" or "train_step_bf16" => ("train_step_fp32", "tok_per_s", "params"),
            _ when name.StartsWith("generate", StringComparison.Ordinal) => ("generate_hf", "new_tok_per_s", null),
            _ => (null, null, (string?)null),
        };
        if (peerName == null || !figure.TryGetValue(metric!, out var ours)) return;
        double value = Convert.ToDouble(ours);
        foreach (bool compiled in new[] { false, true })
        {
            var peer = peers.FirstOrDefault(p => (string?)p["fig"] == peerName
                && (key == null || !figure.ContainsKey(key) || p[key] is null || Convert.ToDouble(figure[key]) == p[key]!.GetValue<double>())
                && ((p["compiled"]?.GetValue<bool>() ?? false) == compiled));
            if (peer?[metric!] is not JsonValue peerValue) continue;
            double peerNumber = peerValue.GetValue<double>();
            string suffix = compiled ? "_compiled" : "";
            figure["peer" + suffix] = Math.Round(peerNumber, 2);
            figure["ratio" + suffix] = peerNumber > 0 ? Math.Round(value / peerNumber, 3) : double.NaN;
        }
    }
}
