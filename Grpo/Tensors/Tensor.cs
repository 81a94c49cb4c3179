// Tensor: a float32 array with a shape, and (when it takes part in training) a gradient.
//
// Data is row-major (the last axis is contiguous), as in PyTorch, so a weight of shape (out, in)
// reads the same as a Hugging Face checkpoint. A tensor lives on one Device, as in PyTorch:
// - on Device.Cpu its values are the host array Data, which the CPU ops (the reference) read and write;
// - on a GPU its values are a DeviceArray (View), which the ops' kernels read and write, and its
//   gradient too (GradView); Data then throws, and ToArray() copies the values to the host.
// To(device) copies a tensor to another device and is differentiable (the gradient goes back), so
// the GRPO loss can run on the host's per-token log-probs of a model that runs on the GPU.
// A tensor made by an op remembers its parents and a backward function (Tensors/Autograd.cs);
// a leaf made with RequiresGrad = true is a parameter and collects gradients until ZeroGrad.
// Tests: Grpo.Tests/AutogradTests.cs.
using System.Runtime.CompilerServices;
using Grpo.Compute;
using ILGPU;
using ILGPU.Runtime;
using Device = Grpo.Compute.Device;

namespace Grpo.Tensors;

public sealed class Tensor
{
    private readonly float[]? data;
    private readonly DeviceArray? storage;

    public int[] Shape { get; }
    public Device Device { get; }
    /// <summary>The values on the host; a tensor on a GPU has none (use ToArray or View).</summary>
    public float[] Data => data ?? NotOnHost();

    // Kept out of Data's getter so that the getter stays small enough to inline in the CPU ops' loops.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private float[] NotOnHost() => throw new InvalidOperationException($"{this} lives on {Device.Kind}: copy it with ToArray() or To(Device.Cpu)");
    public float[]? Grad { get; internal set; }
    /// <summary>The gradient of a tensor on a GPU (null until backward reaches it).</summary>
    public DeviceArray? DeviceGrad { get; internal set; }
    public bool RequiresGrad { get; set; }
    public string? Name { get; set; }

    internal Tensor[] Parents = [];
    internal Action? BackwardFn;

    public Tensor(float[] data, params int[] shape)
    {
        CheckShape(shape, data.Length);
        this.data = data;
        Device = Device.Cpu;
        Shape = (int[])shape.Clone();
    }

    /// <summary>A tensor over device storage (shared, not copied).</summary>
    public Tensor(DeviceArray storage, params int[] shape)
    {
        CheckShape(shape, storage.Length);
        this.storage = storage;
        Device = storage.Device;
        Shape = (int[])shape.Clone();
    }

    private static void CheckShape(int[] shape, long length)
    {
        long size = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentException($"negative dimension in shape [{string.Join(", ", shape)}]");
            size *= d;
        }
        if (size != length)
            throw new ArgumentException($"shape [{string.Join(", ", shape)}] needs {size} values, got {length}");
    }

    /// <summary>A tensor of this shape on device: zeros on the CPU; on a GPU uninitialised unless zero is true
    /// (persistent: not released by an enclosing DeviceArray.Scope, for state such as AdamW's moments).</summary>
    public static Tensor Empty(Device device, int[] shape, bool zero = false, bool persistent = false) =>
        device.IsCpu ? Zeros(shape) : new Tensor(new DeviceArray(device, SizeOf(shape), zero, scoped: !persistent), shape);

    public bool IsOnDevice => storage != null;

    /// <summary>The values on the GPU (throws for a host tensor, or once released).</summary>
    public ArrayView<float> View => (storage ?? throw new InvalidOperationException($"{this} lives on the host: it has no device view")).View;

    /// <summary>The gradient on the GPU, created zeroed on first use (a leaf's, a parameter's, outlives any DeviceArray.Scope).</summary>
    public ArrayView<float> GradView() => (DeviceGrad ??= new DeviceArray(Device, Size, zero: true, scoped: BackwardFn != null)).View;

    /// <summary>Whether backward has put a gradient here.</summary>
    public bool HasGrad => Grad != null || DeviceGrad != null;

    /// <summary>A host copy of the values, wherever they live.</summary>
    public float[] ToArray() => storage?.ToArray() ?? (float[])data!.Clone();

    /// <summary>A host copy of the gradient (null when there is none).</summary>
    public float[]? GradToArray() => DeviceGrad?.ToArray() ?? (float[]?)Grad?.Clone();

    /// <summary>Overwrites the values with host values of the same length.</summary>
    public void CopyFrom(ReadOnlySpan<float> values)
    {
        if (values.Length != Size) throw new ArgumentException($"{values.Length} values for {this} of {Size}");
        if (storage != null) storage.View.SubView(0, Size).CopyFromCPU(values);
        else values.CopyTo(data);
    }

    /// <summary>Overwrites the values with another tensor's (same size, any devices).</summary>
    public void CopyFrom(Tensor source)
    {
        if (source.Size != Size) throw new ArgumentException($"copy of {source} into {this}");
        if (storage != null && source.storage != null && source.Device == Device) source.View.CopyTo(View);
        else if (source.storage != null) CopyFrom(source.ToArray());
        else CopyFrom(source.Data);
    }

    /// <summary>Gives a GPU tensor's memory back now (it must not be used after); nothing on the CPU.</summary>
    public void Release()
    {
        storage?.Release();
        DeviceGrad?.Release();
        DeviceGrad = null;
    }

    /// <summary>
    /// This tensor on another device (itself when already there). Differentiable: the copy's gradient
    /// is copied back and added into this tensor's.
    /// </summary>
    public Tensor To(Device target)
    {
        if (target == Device) return this;
        var copy = target.IsCpu ? new Tensor(ToArray(), Shape) : new Tensor(DeviceArray.Upload(target, storage?.ToArray() ?? data!), Shape);
        var input = this;
        Autograd.Record(copy, [input], () =>
        {
            var g = copy.GradToArray()!;
            if (input.IsOnDevice)
            {
                using var upload = input.Device.UploadToPool<float>(g);
                Compute.Kernels.ElementwiseKernels.Add(input.Device, input.GradView(), upload.View, input.GradView());
            }
            else input.AccumulateGrad(g);
        });
        return copy;
    }

    public static Tensor Zeros(params int[] shape) => new(new float[SizeOf(shape)], shape);

    public static Tensor Scalar(float value) => new([value]);

    /// <summary>A trainable leaf: gradients flow into it and accumulate until ZeroGrad.</summary>
    public static Tensor Parameter(float[] data, params int[] shape) => new(data, shape) { RequiresGrad = true };

    public int Size => data?.Length ?? (int)storage!.Length;
    public int Rank => Shape.Length;

    /// <summary>Dimension i; negative i counts from the end, as in Python.</summary>
    public int Dim(int i) => Shape[i < 0 ? Shape.Length + i : i];

    public float Item()
    {
        if (Size != 1) throw new InvalidOperationException($"Item() needs one value, tensor has {Size}");
        return data?[0] ?? storage!.ToArray()[0];
    }

    public float[] GradOrCreate() => Grad ??= Autograd.NewGradient(Data.Length);

    public void ZeroGrad()
    {
        if (Grad != null) Array.Clear(Grad);
        if (DeviceGrad != null) DeviceGrad.View.MemSetToZero();
    }

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
        var result = storage != null ? new Tensor(storage, shape) : new Tensor(Data, shape);
        var input = this;
        Autograd.Record(result, [input], () =>
        {
            // The gradient is the same values under the input's shape: when the input has none yet,
            // hand the array over rather than adding it into a fresh one.
            if (input.IsOnDevice)
            {
                if (input.DeviceGrad is null) { input.DeviceGrad = result.DeviceGrad; result.DeviceGrad = null; }
                else Compute.Kernels.ElementwiseKernels.Add(input.Device, input.GradView(), result.GradView(), input.GradView());
            }
            else if (input.Grad is null) { input.Grad = result.Grad; result.Grad = null; }
            else input.AccumulateGrad(result.Grad!);
        });
        return result;
    }

    /// <summary>A copy cut off from the graph, on the same device.</summary>
    public Tensor Detach()
    {
        if (storage == null) return new((float[])Data.Clone(), Shape);
        var copy = new Tensor(new DeviceArray(Device, Size), Shape);
        View.CopyTo(copy.View);
        return copy;
    }

    public static int SizeOf(ReadOnlySpan<int> shape)
    {
        int size = 1;
        foreach (var d in shape) size *= d;
        return size;
    }

    public override string ToString() =>
        $"Tensor[{string.Join(", ", Shape)}]{(Name is null ? "" : " " + Name)}{(storage != null ? " on " + Device.Kind : "")}";
}
