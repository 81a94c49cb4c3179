// Every kernel in Grpo.Compute.Kernels compiles to PTX for an H200 (SM_90) through ILGPU's PTX
// backend, with no GPU: a kernel using something ILGPU cannot lower (Math.Clamp, System.Half,
// stackalloc) fails here, and one that lowers to a call the driver cannot link (MathF.FusedMultiplyAdd
// becomes an unresolved `.extern .func`) fails here too instead of only when a GPU loads it.
// Kernels are found by convention: public static methods named *Kernel in that namespace; a first
// parameter of an index type means auto-grouped, otherwise explicitly grouped (KernelConfig).
using System.Reflection;
using System.Text.RegularExpressions;
using Grpo.Compute.Kernels;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Grpo.Tests.Compute;

public class PtxCompileTests
{
    public static IEnumerable<MethodInfo> Kernels() =>
        typeof(MatMulKernels).Assembly.GetTypes()
            .Where(t => t.Namespace == typeof(MatMulKernels).Namespace)
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static))
            .Where(m => m.Name.EndsWith("Kernel", StringComparison.Ordinal))
            .Select(m => m.IsGenericMethodDefinition ? Instance(m) : m);

    /// <summary>A generic kernel (a layout as a type parameter) compiled at one instance: the first type that fits each parameter.</summary>
    private static MethodInfo Instance(MethodInfo kernel) =>
        kernel.MakeGenericMethod(kernel.GetGenericArguments()
            .Select(parameter => parameter.GetGenericParameterConstraints().Single(c => c.IsInterface) is var constraint
                ? typeof(MatMulKernels).Assembly.GetTypes().First(t => t.IsValueType && constraint.IsAssignableFrom(t))
                : throw new InvalidOperationException()).ToArray());

    public static TheoryData<string> KernelNames()
    {
        var data = new TheoryData<string>();
        foreach (var method in Kernels()) data.Add($"{method.DeclaringType!.Name}.{method.Name}");
        return data;
    }

    [Fact]
    public void EveryPortedKernelIsFound()
    {
        var names = Kernels().Select(m => m.Name).ToHashSet();
        string[] ported =
        [
            "MatMulKernel", "MatMulF4Kernel", "MatMulSkinnyKernel", "MatMulRowsKernel", "MatMulLayoutKernel", "MatMulDeepKernel", "AddKernel", "MulKernel", "ScaleKernel", "ExpKernel",
            "AddF4Kernel", "MulF4Kernel", "ScaleF4Kernel", "ExpF4Kernel", "LogKernel", "LogBackwardKernel",
            "SumRowsKernel", "SumAxisKernel", "SumAxisBackwardKernel",
            "SoftmaxKernel", "LogSoftmaxKernel", "SoftmaxBackwardKernel", "LogSoftmaxBackwardKernel",
            "TokenLogProbsKernel", "SoftmaxMinusOneHotKernel", "WeightedLossKernel",
            "RmsNormKernel", "RmsNormBackwardKernel", "RmsNormWeightGradPartialsKernel",
            "EmbeddingKernel", "EmbeddingBackwardKernel",
            "SiluKernel", "SiluBackwardKernel", "SwiGluKernel", "SwiGluBackwardKernel", "RopeKernel",
            "AttentionKernel", "AttentionQueryBackwardKernel", "AttentionKeyValueBackwardKernel",
            "AttentionWarpKernel", "AttentionQueryBackwardWarpKernel", "AttentionDecodeKernel", "AttentionQueryBackwardLanesKernel",
            "FlashAttentionForwardKernel", "FlashAttentionDeltaKernel", "FlashAttentionDeltaWarpKernel", "FlashAttentionQueryBackwardKernel", "FlashAttentionKeyValueBackwardKernel",
            "AdamWKernel", "ArgMaxKernel", "TemperatureSoftmaxKernel", "MinPKernel", "DrawKernel", "DrawWarpKernel",
            "PolicyLossTokenKernel", "PolicyLossSumKernel", "PolicyLossBackwardKernel",
            "TensorCoreGemmKernel", "TensorCoreGemmV1Kernel", "ToBf16Kernel",
            "ConvertKernel", "ConvertTransposedKernel", "FallbackGemmKernel", "EpilogueKernel",
            "DecodeLayerKernel", "DecodeHeadKernel", "SpreadKernel",
        ];
        foreach (var expected in ported)
            Assert.Contains(expected, names);
    }

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void CompilesForSm90WithoutExterns(string name)
    {
        var method = Kernels().Single(m => $"{m.DeclaringType!.Name}.{m.Name}" == name);
        string ptx = CompileToPtx(method);
        Assert.Contains(".entry", ptx);
        var externs = Regex.Matches(ptx, @"\.extern\s+\.func[^\n]*").Select(m => m.Value).ToList();
        Assert.True(externs.Count == 0, $"{name}: unresolved functions in its PTX:\n{string.Join("\n", externs)}");
    }

    [Theory]
    [InlineData("AddF4Kernel")]
    [InlineData("MulF4Kernel")]
    [InlineData("ScaleF4Kernel")]
    [InlineData("ExpF4Kernel")]
    public void ElementwiseV2LoadsAndStoresSixteenBytesAtOnce(string name)
    {
        // the point of v2: a Float4 view becomes one ld.global.v4 / st.global.v4, not four scalar accesses
        string ptx = CompileToPtx(typeof(ElementwiseKernels).GetMethod(name)!);
        Assert.Contains("ld.global.v4", ptx);
        Assert.Contains("st.global.v4", ptx);
    }

    internal static string CompileToPtx(MethodInfo kernel)
    {
        using var context = Context.Create(b => b.EnableAlgorithms().Optimize(OptimizationLevel.O2));
        var sm90 = new CudaArchitecture(9, 0);
        using var backend = new PTXBackend(context, new CudaCapabilityContext(sm90), sm90, CudaInstructionSet.ISA_80, nvvmAPI: null);
        bool autoGrouped = kernel.GetParameters()[0].ParameterType.IsAssignableTo(typeof(IIndex));
        var entry = autoGrouped
            ? EntryPointDescription.FromImplicitlyGroupedKernel(kernel)
            : EntryPointDescription.FromExplicitlyGroupedKernel(kernel);
        var compiled = (PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
        return compiled.PTXAssembly;
    }
}
