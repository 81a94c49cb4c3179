// Device selection and the CPU reference path of the host ops. This machine (and CI) has no GPU,
// so "cuda" must fail with one line a user can read, and "auto" must fall back to the CPU.
using Grpo.Compute;

namespace Grpo.Tests.Compute;

public class DeviceTests
{
    [Fact]
    public void CpuIsTheReferenceDevice()
    {
        Assert.Same(Device.Cpu, Device.Create("cpu"));
        Assert.Same(Device.Cpu, Device.Create(" CPU "));
        Assert.Equal(DeviceKind.Cpu, Device.Cpu.Kind);
    }

    [Fact]
    public void UnknownNameIsOneLineError()
    {
        var error = Assert.Throws<DeviceUnavailableException>(() => Device.Create("tpu"));
        Assert.Contains("tpu", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void CudaIsEitherThereOrOneLineError()
    {
        try
        {
            using var device = Device.Create("cuda");
            Assert.Equal(DeviceKind.Cuda, device.Kind);
        }
        catch (DeviceUnavailableException error)
        {
            Assert.DoesNotContain('\n', error.Message);
            Assert.Contains("CUDA", error.Message);
        }
    }

    [Fact]
    public void AutoTakesCudaWhenPresentElseCpu()
    {
        var device = Device.Create("auto");
        Assert.True(device.Kind is DeviceKind.Cpu or DeviceKind.Cuda);
        device.Dispose();
    }

    [Fact]
    public void CpuHostOpsByHand()
    {
        // [1 2; 3 4]^T @ [5 6; 7 8] = [1 3; 2 4] @ [5 6; 7 8] = [1*5+3*7, 1*6+3*8; 2*5+4*7, 2*6+4*8] = [26 30; 38 44]
        var c = new float[4];
        Device.Cpu.MatMul([1, 2, 3, 4], true, [5, 6, 7, 8], false, c, 1, 2, 2, 2);
        Assert.Equal([26f, 30, 38, 44], c);
        // [1 2; 3 4] + [10 20] repeated = [11 22; 13 24]
        var y = new float[4];
        Device.Cpu.Add([1, 2, 3, 4], [10, 20], y);
        Assert.Equal([11f, 22, 13, 24], y);
    }
}
