// `grpo explain advantages|kl|loss`: the GRPO math of Rl/ worked through step by step on numbers
// you give it, to read next to DeepSeekMath section 4.1. With --json the last (only) line is the
// result as JSON, the interface Grpo.Tests/Rl/ReferenceAgreementTests.cs checks against an
// independent Python implementation (Grpo.Tests/Reference/grpo_reference.py).
//   grpo explain advantages --rewards 0,1,0,1 --group-size 4 [--std population|sample] [--scale group|batch|none] [--eps X] [--json]
//   grpo explain kl --logp -1.0 --ref-logp -1.5 [--json]
//   grpo explain loss --input case.json [--json]     (case.json: see LossCase below)
// Bad input: one line `error: ...` on stderr and exit code 1.
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Grpo.Rl;

namespace Grpo.Cli;

public static class ExplainCommand
{
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public static Command Create()
    {
        var command = new Command("explain", "Work through GRPO's advantages, KL estimators and policy loss on your numbers (DeepSeekMath 4.1)");
        command.Subcommands.Add(AdvantagesCommand());
        command.Subcommands.Add(KlCommand());
        command.Subcommands.Add(LossCommand());
        return command;
    }

    /// <summary>Runs `grpo explain ...` (args start with "explain") writing to the given writers: for tests.</summary>
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        var root = new RootCommand("grpo") { Create() };
        return root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
    }

    private static Command AdvantagesCommand()
    {
        var rewards = new Option<string>("--rewards") { Description = "comma-separated rewards, group-major, e.g. 0,1,0,1" };
        var groupSize = new Option<string>("--group-size") { Description = "outputs per question (G)" };
        var std = new Option<string>("--std") { Description = "population (divide by n, the paper's example) or sample (n - 1, as TRL)", DefaultValueFactory = _ => "population" };
        var scale = new Option<string>("--scale") { Description = "group (the paper), batch (std over the batch) or none (Dr. GRPO)", DefaultValueFactory = _ => "group" };
        var eps = new Option<string>("--eps") { Description = "added to the std", DefaultValueFactory = _ => "0" };
        var json = new Option<bool>("--json") { Description = "print only {\"advantages\": [...]}" };
        var command = new Command("advantages", "Group-relative advantages from rewards (section 4.1.2)") { rewards, groupSize, std, scale, eps, json };
        command.SetAction(parse => Guarded(parse, output =>
        {
            var rewardValues = ParseNumbers(Required(parse.GetValue(rewards), "--rewards"), "--rewards");
            int size = ParseInt(Required(parse.GetValue(groupSize), "--group-size"), "--group-size");
            var options = new AdvantageOptions(Advantages.ParseScale(parse.GetValue(scale)!), Advantages.ParseStd(parse.GetValue(std)!),
                ParseDouble(parse.GetValue(eps)!, "--eps"));
            var result = Advantages.OutcomeWithSteps(rewardValues, size, options);
            if (parse.GetValue(json)) { output.WriteLine(JsonSerializer.Serialize(new { advantages = result.Advantages })); return; }
            TeachAdvantages(output, rewardValues, size, options, result);
        }));
        return command;
    }

    private static void TeachAdvantages(TextWriter output, float[] rewards, int groupSize, AdvantageOptions options, OutcomeAdvantages result)
    {
        string divisor = options.Scale switch
        {
            AdvantageScale.Group => options.Eps == 0 ? "std(r)" : "(std(r) + eps)",
            AdvantageScale.Batch => options.Eps == 0 ? "std(batch)" : "(std(batch) + eps)",
            _ => "",
        };
        string formula = divisor == "" ? "r_i - mean(r)" : $"(r_i - mean(r)) / {divisor}";
        output.WriteLine($"Outcome supervision (DeepSeekMath 4.1.2): A_i = {formula}, per group of G = {groupSize}");
        output.WriteLine($"  std: {(options.Std == StdKind.Population ? "population (divide by n, as the paper's example)" : "sample (divide by n - 1, as TRL)")}, " +
            $"scale: {options.Scale.ToString().ToLowerInvariant()}{(options.Scale == AdvantageScale.None ? " (Dr. GRPO: no division)" : "")}, eps = {F(options.Eps)}");
        if (options.Scale == AdvantageScale.Batch)
            output.WriteLine($"  std of all {rewards.Length} rewards in the batch = {F(result.Divisors[0] - options.Eps)}");
        int n = options.Std == StdKind.Population ? groupSize : groupSize - 1;
        for (int g = 0; g < result.GroupMeans.Length; g++)
        {
            var group = rewards.Skip(g * groupSize).Take(groupSize).ToArray();
            double mean = result.GroupMeans[g];
            output.WriteLine($"group {g + 1}: rewards r = [{Join(group)}]");
            output.WriteLine($"  mean(r) = ({string.Join(" + ", group.Select(r => F(r)))}) / {groupSize} = {F(mean)}");
            output.WriteLine($"  std(r)  = sqrt(({string.Join(" + ", group.Select(r => $"({F(r)} - {F(mean)})^2"))}) / {n}) = {F(result.GroupStds[g])}");
            var advantages = result.Advantages.Skip(g * groupSize).Take(groupSize).ToArray();
            if (result.GroupStds[g] == 0)
                output.WriteLine("  every output got the same reward: nothing to prefer, advantages are 0");
            else
                output.WriteLine(options.Scale == AdvantageScale.None
                    ? $"  A = r - {F(mean)} = [{Join(advantages)}]"
                    : $"  A = (r - {F(mean)}) / {F(result.Divisors[g])} = [{Join(advantages)}]");
        }
        output.WriteLine($"advantages: [{Join(result.Advantages)}]");
        output.WriteLine("Every token of output i gets A_i (outcome supervision); the policy loss pushes up outputs with A > 0.");
    }

    private static Command KlCommand()
    {
        var logp = new Option<string>("--logp") { Description = "log pi_theta(o_t) of the sampled token" };
        var refLogp = new Option<string>("--ref-logp") { Description = "log pi_ref(o_t) of the same token" };
        var json = new Option<bool>("--json") { Description = "print only {\"k1\": .., \"k2\": .., \"k3\": ..}" };
        var command = new Command("kl", "The per-token KL estimators k1, k2, k3 (eq. 4 is k3)") { logp, refLogp, json };
        command.SetAction(parse => Guarded(parse, output =>
        {
            double policy = ParseDouble(Required(parse.GetValue(logp), "--logp"), "--logp");
            double reference = ParseDouble(Required(parse.GetValue(refLogp), "--ref-logp"), "--ref-logp");
            if (policy > 0 || reference > 0) throw new ArgumentException("log-probabilities must be <= 0");
            double k1 = KlEstimators.K1(policy, reference), k2 = KlEstimators.K2(policy, reference), k3 = KlEstimators.K3(policy, reference);
            if (parse.GetValue(json)) { output.WriteLine(JsonSerializer.Serialize(new { k1, k2, k3 })); return; }
            output.WriteLine("Per-token estimators of KL(pi_theta || pi_ref) for a token sampled from pi_theta (Schulman 2020)");
            output.WriteLine($"  logp = {F(policy)}, ref logp = {F(reference)}: d = log(pi/pi_ref) = {F(policy - reference)}, pi_ref/pi = e^-d = {F(Math.Exp(reference - policy))}");
            output.WriteLine($"  k1 = d                               = {F(k1),-10}  unbiased, can be negative     d k1/d logp = {F(KlEstimators.Gradient(KlEstimator.K1, policy, reference))}");
            output.WriteLine($"  k2 = d^2 / 2                         = {F(k2),-10}  biased, never negative        d k2/d logp = {F(KlEstimators.Gradient(KlEstimator.K2, policy, reference))}");
            output.WriteLine($"  k3 = pi_ref/pi - log(pi_ref/pi) - 1  = {F(k3),-10}  unbiased, never negative      d k3/d logp = {F(KlEstimators.Gradient(KlEstimator.K3, policy, reference))}");
            output.WriteLine("GRPO (eq. 3) subtracts beta * k3 from the objective per token: DeepSeekMath's eq. 4 is k3.");
        }));
        return command;
    }

    /// <summary>The file `explain loss --input` reads: one array per output (lengths may differ).</summary>
    private sealed class LossCase
    {
        public float[][]? LogProbs { get; set; }
        public float[][]? OldLogProbs { get; set; }
        public float[][]? RefLogProbs { get; set; }
        public float[]? Advantages { get; set; }
        public float? Epsilon { get; set; }
        public float? EpsilonHigh { get; set; }
        public float? Beta { get; set; }
        public string? Aggregation { get; set; }
        public int? MaxTokens { get; set; }
        public string? Kl { get; set; }
    }

    private static readonly JsonSerializerOptions CaseJson = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        NumberHandling = JsonNumberHandling.Strict,
    };

    private static Command LossCommand()
    {
        var input = new Option<string>("--input") { Description = "case.json: logProbs, oldLogProbs, refLogProbs (one array per output), advantages (one per output), epsilon, epsilonHigh, beta, aggregation (sequence|token|constant), maxTokens, kl (k1|k2|k3, default k3)" };
        var json = new Option<bool>("--json") { Description = "print only {\"loss\": L, \"gradLogProbs\": [[...], ...]}" };
        var command = new Command("loss", "The GRPO policy loss (eq. 3) and its gradient, term by term") { input, json };
        command.SetAction(parse => Guarded(parse, output =>
        {
            string path = Required(parse.GetValue(input), "--input");
            if (!File.Exists(path)) throw new ArgumentException($"no such file: {path}");
            LossCase lossCase;
            try { lossCase = JsonSerializer.Deserialize<LossCase>(File.ReadAllText(path), CaseJson) ?? throw new ArgumentException($"{path} holds no case"); }
            catch (JsonException e)
            {
                throw new ArgumentException($"{path}: {e.Message.Replace(typeof(LossCase).FullName!, "a loss case (logProbs, oldLogProbs, refLogProbs, advantages, epsilon, epsilonHigh, beta, aggregation, maxTokens, kl)")}");
            }
            ExplainLoss(lossCase, parse.GetValue(json), output);
        }));
        return command;
    }

    private static void ExplainLoss(LossCase lossCase, bool json, TextWriter output)
    {
        var logProbs = lossCase.LogProbs ?? throw new ArgumentException("the case has no logProbs");
        var oldLogProbs = lossCase.OldLogProbs ?? throw new ArgumentException("the case has no oldLogProbs");
        var advantages = lossCase.Advantages ?? throw new ArgumentException("the case has no advantages");
        var refLogProbs = lossCase.RefLogProbs;
        int batch = logProbs.Length;
        if (batch == 0) throw new ArgumentException("logProbs holds no outputs");
        void SameOutputs(int count, string name)
        {
            if (count != batch) throw new ArgumentException($"{name} has {count} outputs but logProbs has {batch}");
        }
        SameOutputs(oldLogProbs.Length, "oldLogProbs"); SameOutputs(advantages.Length, "advantages");
        if (refLogProbs != null) SameOutputs(refLogProbs.Length, "refLogProbs");
        for (int i = 0; i < batch; i++)
        {
            if (logProbs[i] == null) throw new ArgumentException($"logProbs[{i}] is null");
            if (oldLogProbs[i]?.Length != logProbs[i].Length)
                throw new ArgumentException($"oldLogProbs[{i}] has {oldLogProbs[i]?.Length ?? 0} values but logProbs[{i}] has {logProbs[i].Length}");
            if (refLogProbs != null && refLogProbs[i]?.Length != logProbs[i].Length)
                throw new ArgumentException($"refLogProbs[{i}] has {refLogProbs[i]?.Length ?? 0} values but logProbs[{i}] has {logProbs[i].Length}");
        }
        float epsilon = lossCase.Epsilon ?? 0.2f;
        var options = new PolicyLossOptions
        {
            EpsilonLow = epsilon,
            EpsilonHigh = lossCase.EpsilonHigh ?? epsilon,
            Beta = lossCase.Beta ?? 0.04f,
            Aggregation = PolicyLossOptions.ParseAggregation(lossCase.Aggregation ?? "sequence"),
            Kl = KlEstimators.Parse(lossCase.Kl ?? "k3"),
        };
        if (options.Aggregation == LossAggregation.Constant && lossCase.MaxTokens == null)
            throw new ArgumentException("constant aggregation needs maxTokens (the generation budget per output)");
        options = options with { MaxTokens = lossCase.MaxTokens ?? 0 };

        // Pad the ragged outputs to (B, T) with a mask, as the trainer does.
        int tokens = Math.Max(1, logProbs.Max(l => l.Length));
        var logProbData = new float[batch * tokens]; var old = new float[batch * tokens];
        var reference = refLogProbs == null ? null : new float[batch * tokens];
        var tokenAdvantages = new float[batch * tokens]; var mask = new float[batch * tokens];
        for (int i = 0; i < batch; i++)
            for (int t = 0; t < logProbs[i].Length; t++)
            {
                int k = i * tokens + t;
                logProbData[k] = logProbs[i][t]; old[k] = oldLogProbs[i][t];
                if (reference != null) reference[k] = refLogProbs![i][t];
                tokenAdvantages[k] = advantages[i]; mask[k] = 1;
            }
        var policyLogProbs = Tensor.Parameter(logProbData, batch, tokens);
        var result = PolicyLoss.Compute(policyLogProbs, old, reference, tokenAdvantages, mask, options);
        Autograd.Backward(result.Loss);
        var grad = policyLogProbs.Grad!;
        var gradPerOutput = Enumerable.Range(0, batch).Select(i => grad.AsSpan(i * tokens, logProbs[i].Length).ToArray()).ToArray();
        float loss = result.Loss.Item();
        if (json) { output.WriteLine(JsonSerializer.Serialize(new { loss, gradLogProbs = gradPerOutput })); return; }

        string estimator = options.Kl.ToString().ToLowerInvariant();
        output.WriteLine("GRPO policy loss (DeepSeekMath eq. 3), per token t of output i:");
        output.WriteLine("  ratio = exp(logp - old logp); surrogate = min(ratio * A, clip(ratio, 1 - epsLow, 1 + epsHigh) * A)");
        output.WriteLine($"  term = -(surrogate - beta * {estimator}(logp, ref logp)); loss = sum of w * term; grad = d loss / d logp");
        output.WriteLine($"  epsLow = {F(options.EpsilonLow)}, epsHigh = {F(options.EpsilonHigh)}, beta = {F(options.Beta)}, KL estimator {estimator}, aggregation {Describe(options, batch)}");
        var terms = result.Terms;
        for (int i = 0; i < batch; i++)
        {
            output.WriteLine($"output {i + 1}: A = {F(advantages[i])}, {logProbs[i].Length} tokens");
            output.WriteLine($"  {"t",3} {"logp",10} {"old logp",10} {"ratio",10} {"clipped",7} {"surrogate",10} {"ref logp",10} {estimator,10} {"term",10} {"w",10} {"grad",10}");
            for (int t = 0; t < logProbs[i].Length; t++)
            {
                int j = i * tokens + t;
                string refText = reference == null ? "-" : F(reference[j]);
                output.WriteLine($"  {t + 1,3} {F(logProbData[j]),10} {F(old[j]),10} {F(terms.Ratio[j]),10} {(terms.Clipped[j] ? "yes" : "no"),7} {F(terms.Surrogate[j]),10} {refText,10} {F(terms.Kl[j]),10} {F(terms.Term[j]),10} {F(terms.Weight[j]),10} {F(grad[j]),10}");
            }
        }
        var s = result.Statistics;
        output.WriteLine($"loss = {F(loss)}   (mean {estimator} = {F(s.MeanKl)}, mean ratio = {F(s.MeanRatio)}, clipped low = {F(s.ClipFractionLow)}, clipped high = {F(s.ClipFractionHigh)} of {s.Tokens} tokens)");
        output.WriteLine("A clipped token has gradient 0 from the surrogate: it already moved past 1 +- eps in the direction of its advantage.");
    }

    private static string Describe(PolicyLossOptions options, int batch) => options.Aggregation switch
    {
        LossAggregation.Sequence => $"sequence (the paper): w = 1 / (B * |o_i|), B = {batch}",
        LossAggregation.Token => "token (DAPO): w = 1 / (total completion tokens)",
        _ => $"constant (Dr. GRPO): w = 1 / (B * maxTokens) = 1 / ({batch} * {options.MaxTokens})",
    };

    /// <summary>Runs a subcommand body; bad input (ArgumentException and friends) becomes one error line and exit 1.</summary>
    private static int Guarded(ParseResult parse, Action<TextWriter> body)
    {
        try
        {
            body(parse.InvocationConfiguration.Output);
            return 0;
        }
        catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException)
        {
            parse.InvocationConfiguration.Error.WriteLine($"error: {e.Message.ReplaceLineEndings(" ")}");
            return 1;
        }
    }

    private static string Required(string? value, string name) =>
        string.IsNullOrWhiteSpace(value) ? throw new ArgumentException($"{name} is required") : value;

    private static float[] ParseNumbers(string text, string name)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var values = new float[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            values[i] = (float)ParseDouble(parts[i], name);
        return values;
    }

    private static double ParseDouble(string text, string name)
    {
        if (!double.TryParse(text.Trim(), NumberStyles.Float, Invariant, out double value) || !double.IsFinite(value))
            throw new ArgumentException($"{name}: '{text}' is not a finite number");
        return value;
    }

    private static int ParseInt(string text, string name)
    {
        if (!int.TryParse(text.Trim(), NumberStyles.Integer, Invariant, out int value))
            throw new ArgumentException($"{name}: '{text}' is not a whole number");
        return value;
    }

    private static string F(double value) => value.ToString("G6", Invariant);

    private static string Join(IEnumerable<float> values) => string.Join(", ", values.Select(v => F(v)));
}
