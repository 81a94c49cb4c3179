// PNG line plots of a run's curves (ScottPlot): reward and KL per step, pass@K and maj@K against K.
namespace Grpo.Cli;

public static class Plots
{
    public sealed record Series(string Label, IReadOnlyList<double> X, IReadOnlyList<double> Y);

    /// <summary>legendOutside puts the legend in a panel right of the axes, where it hides no point.</summary>
    public static void Line(string path, string title, string xLabel, string yLabel, IEnumerable<Series> series, bool logX = false, bool legendOutside = false)
    {
        var plot = new ScottPlot.Plot();
        foreach (var s in series)
        {
            var xs = s.X.Select(x => logX ? Math.Log2(x) : x).ToArray();
            var line = plot.Add.Scatter(xs, s.Y.ToArray());
            line.LegendText = s.Label;
        }
        if (logX)
        {
            var ticks = series.SelectMany(s => s.X).Distinct().OrderBy(x => x)
                .Select(x => new ScottPlot.Tick(Math.Log2(x), x.ToString("0"))).ToArray();
            plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks);
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        if (legendOutside) plot.ShowLegend(ScottPlot.Edge.Right);
        else plot.ShowLegend();
        plot.SavePng(path, legendOutside ? 860 : 720, 420);
    }
}
