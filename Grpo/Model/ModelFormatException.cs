// The error for a model or checkpoint file that cannot be read as it claims to be: a truncated
// safetensors file, a header that points outside the file, an unknown dtype, a tensor whose shape
// does not fit the config. The message is one line and names the file and, where there is one, the
// tensor, so the command line can print it as `error: ...`. Tests: Grpo.Tests/Model/SafeTensorsTests.cs.
namespace Grpo.Model;

public sealed class ModelFormatException : Exception
{
    public ModelFormatException(string message) : base(message.ReplaceLineEndings(" ")) { }

    public ModelFormatException(string message, Exception inner) : base(message.ReplaceLineEndings(" "), inner) { }
}
