// Order statistics of a sample of latencies (milliseconds): what every table reports.

/** The q-quantile (0..1) of an ascending array, by linear interpolation between ranks. */
export function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** n, min, median, p90, p99, max and mean of a sample. */
export function summarize(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  return {
    n: s.length,
    min: s[0] ?? NaN,
    median: quantile(s, 0.5),
    p90: quantile(s, 0.9),
    p99: quantile(s, 0.99),
    max: s[s.length - 1] ?? NaN,
    mean,
  };
}

export const median = (xs) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );
