// Tensor: a float32 array with a shape, and (when it takes part in training) a gradient.
//
// Data is row-major (the last axis is contiguous), as in PyTorch, so a weight of shape (out, in)
// reads the same as a Hugging Face checkpoint. The host array is the reference storage: the CPU
// ops read and write it directly; CUDA kernels (Compute/) work on device copies of it.
// A tensor made by an op remembers its parents and a backward function (Tensors/Autograd.cs);
// a leaf made with RequiresGrad = true is a parameter and collects gradients until ZeroGrad.
// Tests: Grpo.Tests/AutogradTests.cs.
namespace Grpo.Tensors;

public sealed class Tensor
{
    public int[] Shape { get; }
    public float[] Data { get; }
    public float[]? Grad { get; internal set; }
    public bool RequiresGrad { get; set; }
    public string? Name { get; set; }

    internal Tensor[] Parents = [];
    internal Action? BackwardFn;

    public Tensor(float[] data, params int[] shape)
    {
        long size = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentException($"negative dimension in shape [{string.Join(", ", shape)}]");
            size *= d;
        }
        if (size != data.Length)
            throw new ArgumentException($"shape [{string.Join(", ", shape)}] needs {size} values, got {data.Length}");
        Data = data;
        Shape = (int[])shape.Clone();
    }

    public static Tensor Zeros(params int[] shape) => new(new float[SizeOf(shape)], shape);

    public static Tensor Scalar(float value) => new([value]);

    /// <summary>A trainable leaf: gradients flow into it and accumulate until ZeroGrad.</summary>
    public static Tensor Parameter(float[] data, params int[] shape) => new(data, shape) { RequiresGrad = true };

    public int Size => Data.Length;
    public int Rank => Shape.Length;

    /// <summary>Dimension i; negative i counts from the end, as in Python.</summary>
    public int Dim(int i) => Shape[i < 0 ? Shape.Length + i : i];

    public float Item()
    {
        if (Size != 1) throw new InvalidOperationException($"Item() needs one value, tensor has {Size}");
        return Data[0];
    }

    public float[] GradOrCreate() => Grad ??= Autograd.NewGradient(Data.Length);

    public void ZeroGrad() { if (Grad != null) Array.Clear(Grad); }

    /// <summary>Adds g into this tensor's gradient (gradients accumulate: a tensor used twice gets both).</summary>
    public void AccumulateGrad(ReadOnlySpan<float> g)
    {
        var grad = GradOrCreate();
        System.Numerics.Tensors.TensorPrimitives.Add(grad, g, grad);
    }

    /// <summary>The same values under another shape (shares Data); gradients flow back unchanged.</summary>
    public Tensor Reshape(params int[] shape)
    {
        int infer = Array.IndexOf(shape, -1);
        if (infer >= 0)
        {
            shape = (int[])shape.Clone();
            shape[infer] = 1;
            shape[infer] = Size / SizeOf(shape);
        }
        var result = new Tensor(Data, shape);
        var input = this;
        Autograd.Record(result, [input], () =>
        {
            // The gradient is the same values under the input's shape: when the input has none yet,
            // hand the array over rather than adding it into a fresh one.
            if (input.Grad is null) { input.Grad = result.Grad; result.Grad = null; }
            else input.AccumulateGrad(result.Grad!);
        });
        return result;
    }

    /// <summary>A copy cut off from the graph.</summary>
    public Tensor Detach() => new((float[])Data.Clone(), Shape);

    public static int SizeOf(ReadOnlySpan<int> shape)
    {
        int size = 1;
        foreach (var d in shape) size *= d;
        return size;
    }

    public override string ToString() =>
        $"Tensor[{string.Join(", ", Shape)}]{(Name is null ? "" : " " + Name)}";
}
