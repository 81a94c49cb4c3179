// The buffer pool reuses device memory: a returned buffer serves the next request of its size class
// (powers of two) without a new allocation. Runs on the CPU accelerator (no GPU here).
using Grpo.Compute;

namespace Grpo.Tests.Compute;

[Collection("cpu-accelerator")]
public class BufferPoolTests(CpuAcceleratorFixture fixture)
{
    [Fact]
    public void ReturnedBufferIsReusedWithinItsPowerOfTwo()
    {
        using var pool = new BufferPool(fixture.Device.Accelerator);
        using (var first = pool.Rent<float>(1000))
        {
            Assert.Equal(1000, first.View.Length);
            Assert.Equal(1024 * sizeof(float), pool.BytesRented);
        }
        Assert.Equal(0, pool.BytesRented);
        // 600 rounds up to 1024 as 1000 did: the same buffer comes back, no second allocation.
        using (var second = pool.Rent<float>(600)) Assert.Equal(600, second.View.Length);
        Assert.Equal(1, pool.Allocations);
        // 2000 is another size class; ints are another type: new allocations.
        using (pool.Rent<float>(2000)) { }
        using (pool.Rent<int>(1000)) { }
        Assert.Equal(3, pool.Allocations);
        Assert.Equal((1024 + 2048) * sizeof(float) + 1024 * sizeof(int), pool.BytesAllocated);
        pool.Trim();
        Assert.Equal(0, pool.BytesAllocated);
    }

    [Fact]
    public void UploadThenDownloadRoundTrips()
    {
        using var pool = new BufferPool(fixture.Device.Accelerator);
        using var buffer = pool.Rent<float>(5);
        buffer.Upload([1, 2, 3, 4, 5]);
        var back = new float[5];
        buffer.Download(back);
        Assert.Equal([1f, 2, 3, 4, 5], back);
        Assert.Throws<ArgumentException>(() => buffer.Upload(new float[6]));
    }

    [Fact]
    public void ReturnedBufferCannotBeUsed()
    {
        using var pool = new BufferPool(fixture.Device.Accelerator);
        var buffer = pool.Rent<float>(4);
        buffer.Dispose();
        buffer.Dispose(); // twice is harmless
        Assert.Throws<ObjectDisposedException>(() => buffer.View);
        Assert.Equal(0, pool.BytesRented);
    }

    [Fact]
    public void AnAllocationTooLargeForTheDeviceIsOneLineNamingTheSizes()
    {
        // 2^40 floats (4 TiB) fits no device here: the pool gives back its free buffers, retries once,
        // then says what was asked for and what the device has, and keeps its books straight.
        using var pool = new BufferPool(fixture.Device.Accelerator);
        using (pool.Rent<float>(1000)) { }
        var e = Assert.Throws<DeviceOutOfMemoryException>(() => pool.Rent<float>(1L << 40));
        Assert.StartsWith("out of device memory on ", e.Message);
        Assert.Contains("asked for 4096.00 GiB", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal(0, pool.BytesRented);
        Assert.Equal(0, pool.BytesAllocated);
    }
}
