// Reverse-mode automatic differentiation (micrograd's engine, on tensors).
//
// Every op that produces a tensor calls Record(output, inputs, backward). Backward(loss) sorts the
// graph topologically from the loss, seeds d loss / d loss = 1, and calls each node's backward
// function in reverse order; a backward function reads output.Grad and adds into its inputs' Grad
// (so a tensor used twice receives the sum of both contributions).
// NoGrad() opens a scope in which nothing is recorded: sampling and evaluation run there.
// Memory: a node's gradient is dead once its own backward has run, so Backward hands the array to
// the next GradOrCreate of the same length (GradientPool, alive for one Backward call on its thread).
// A training step's backward then allocates about one layer's gradients rather than every layer's:
// fresh large arrays cost page faults and full collections, more than the arithmetic of the small ops.
// On a GPU the same holds through the device's buffer pool: a node's DeviceGrad is released (back
// to the pool) as soon as its backward has run.
// Tests: Grpo.Tests/AutogradTests.cs; every op's gradient check uses Backward.
namespace Grpo.Tensors;

public static class Autograd
{
    [ThreadStatic] private static int noGradDepth;
    [ThreadStatic] private static GradientPool? gradientPool;

    /// <summary>True unless inside a NoGrad scope on this thread.</summary>
    public static bool IsRecording => noGradDepth == 0;

    /// <summary>using (Autograd.NoGrad()) { ... }: ops inside record no graph.</summary>
    public static IDisposable NoGrad()
    {
        noGradDepth++;
        return new Scope();
    }

    private sealed class Scope : IDisposable
    {
        private bool disposed;
        public void Dispose()
        {
            if (disposed) return;
            disposed = true;
            noGradDepth--;
        }
    }

    /// <summary>Links output to its inputs, if recording and any input needs a gradient.</summary>
    public static void Record(Tensor output, Tensor[] inputs, Action backward)
    {
        if (!IsRecording) return;
        bool any = false;
        foreach (var input in inputs) any |= input.RequiresGrad;
        if (!any) return;
        output.RequiresGrad = true;
        output.Parents = inputs;
        output.BackwardFn = backward;
    }

    /// <summary>Computes d loss / d t for every tensor t that loss depends on and that requires grad.</summary>
    public static void Backward(Tensor loss)
    {
        if (loss.Size != 1) throw new ArgumentException($"Backward needs a scalar loss, got {loss}");
        Backward(loss, [1f]);
    }

    /// <summary>Backward from a non-scalar output with a given d loss / d output (a vector-Jacobian product).</summary>
    public static void Backward(Tensor output, ReadOnlySpan<float> outputGrad)
    {
        if (!output.RequiresGrad) throw new InvalidOperationException("the output does not depend on any tensor that requires grad");
        if (outputGrad.Length != output.Size) throw new ArgumentException($"output gradient has {outputGrad.Length} values, output {output.Size}");
        var order = TopologicalOrder(output);
        var outerPool = gradientPool;
        gradientPool = new GradientPool();
        try
        {
            if (output.IsOnDevice)
            {
                using var seed = output.Device.UploadToPool<float>(outputGrad);
                Compute.Kernels.ElementwiseKernels.Add(output.Device, output.GradView(), seed.View, output.GradView());
            }
            else output.AccumulateGrad(outputGrad);
            for (int i = order.Count - 1; i >= 0; i--)
            {
                var node = order[i];
                if (node.BackwardFn == null || !node.HasGrad) continue;
                node.BackwardFn();
                // Every contribution to node.Grad came before (topological order) and only node's own
                // backward reads it, so the array is free for the gradients still to come.
                if (node.Grad != null) gradientPool.Return(node.Grad);
                node.Grad = null;
                node.DeviceGrad?.Release();
                node.DeviceGrad = null;
            }
        }
        finally { gradientPool = outerPool; }
        // Intermediate gradients are no longer needed; parameters (leaves) keep theirs.
        foreach (var node in order)
            if (node.BackwardFn != null)
            {
                node.Grad = null;
                node.DeviceGrad?.Release();
                node.DeviceGrad = null;
                node.BackwardFn = null;
                node.Parents = [];
            }
    }

    /// <summary>A zeroed array for a new gradient: recycled from a finished node inside Backward, else new.</summary>
    internal static float[] NewGradient(int length) => gradientPool?.TakeZeroed(length) ?? new float[length];

    /// <summary>Gradient arrays whose nodes' backward has run, by length.</summary>
    private sealed class GradientPool
    {
        private readonly Dictionary<int, Stack<float[]>> free = new();

        public void Return(float[] array)
        {
            if (!free.TryGetValue(array.Length, out var stack)) free[array.Length] = stack = new Stack<float[]>();
            stack.Push(array);
        }

        public float[]? TakeZeroed(int length)
        {
            if (!free.TryGetValue(length, out var stack) || stack.Count == 0) return null;
            var array = stack.Pop();
            Array.Clear(array);
            return array;
        }
    }

    /// <summary>Nodes ordered so that every tensor comes after all of its inputs (iterative DFS).</summary>
    internal static List<Tensor> TopologicalOrder(Tensor root)
    {
        var order = new List<Tensor>();
        var visited = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Tensor node, int next)>();
        stack.Push((root, 0));
        visited.Add(root);
        while (stack.Count > 0)
        {
            var (node, next) = stack.Pop();
            if (next < node.Parents.Length)
            {
                stack.Push((node, next + 1));
                var parent = node.Parents[next];
                if (parent.RequiresGrad && visited.Add(parent)) stack.Push((parent, 0));
            }
            else order.Add(node);
        }
        return order;
    }
}
