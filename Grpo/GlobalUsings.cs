global using Grpo.Tensors;
global using Tensor = Grpo.Tensors.Tensor;
