// `--precision fp32|bf16`: what the linear layers multiply in (Ops/MatMulPrecision.cs), for check and bench;
// sft, grpo and demo take it as a setting (SftSettings.Precision, GrpoSettings.Precision) through SettingsBinder.
// fp32 is the default; bf16 rounds the matmul operands to bf16 (tensor cores on CUDA) and keeps the master
// weights, gradients and AdamW in fp32. Tests: Grpo.Tests/Cli/CommandWiringTests.cs.
using System.CommandLine;
using Grpo.Ops;

namespace Grpo.Cli;

public static class PrecisionOption
{
    public static Option<string> Create() => new("--precision")
    {
        Description = "fp32|bf16: the linear layers' matmuls (bf16: bf16 operands, fp32 sums and master weights)",
        DefaultValueFactory = _ => "fp32",
    };

    /// <summary>fp32 or bf16 (any case); otherwise false with a one-line error.</summary>
    public static bool TryParse(string text, out MatMulPrecision precision, out string error)
    {
        error = "";
        switch (text.Trim().ToLowerInvariant())
        {
            case "fp32": precision = MatMulPrecision.Fp32; return true;
            case "bf16": precision = MatMulPrecision.Bf16; return true;
            default:
                precision = MatMulPrecision.Fp32;
                error = $"--precision must be fp32 or bf16, not '{text}'";
                return false;
        }
    }
}
