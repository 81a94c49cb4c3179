// Reverse-mode automatic differentiation (micrograd's engine, on tensors).
//
// Every op that produces a tensor calls Record(output, inputs, backward). Backward(loss) sorts the
// graph topologically from the loss, seeds d loss / d loss = 1, and calls each node's backward
// function in reverse order; a backward function reads output.Grad and adds into its inputs' Grad
// (so a tensor used twice receives the sum of both contributions).
// NoGrad() opens a scope in which nothing is recorded: sampling and evaluation run there.
// Tests: Grpo.Tests/AutogradTests.cs; every op's gradient check uses Backward.
namespace Grpo.Tensors;

public static class Autograd
{
    [ThreadStatic] private static int noGradDepth;

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
        output.AccumulateGrad(outputGrad);
        for (int i = order.Count - 1; i >= 0; i--)
        {
            var node = order[i];
            if (node.BackwardFn != null && node.Grad != null) node.BackwardFn();
        }
        // Intermediate gradients are no longer needed; parameters (leaves) keep theirs.
        foreach (var node in order)
            if (node.BackwardFn != null) { node.Grad = null; node.BackwardFn = null; node.Parents = []; }
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
