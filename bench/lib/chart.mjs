// bench/start-latency.svg: one box plot per series on a shared logarithmic time axis, nsbox
// first and in its own colour, so that "how many times faster" reads as a distance.
// Hand-written SVG, no dependencies.

const W = 980;
const LABEL_W = 250;
const RIGHT = 80;
const ROW = 30;
const BOX = 14;

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (ms) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));

/**
 * panels: [{ title, rows: [{ label, pct: {5,25,50,75,95,99}, highlight }], marks: [{ at, label }] }]
 * (marks: dashed vertical lines, the targets)
 * A box spans p25..p75 with the median as a bar, whiskers p5..p95, a dot at p99.
 */
export function boxPlotSvg(panels, { title, subtitle }) {
  const all = panels.flatMap((p) => p.rows.flatMap((r) => [r.pct[5], r.pct[99]]));
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...all)) * 2) / 2);
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all)) * 2) / 2);
  const x = (ms) => LABEL_W + ((Math.log10(ms) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (W - LABEL_W - RIGHT);
  const ticks = [];
  for (let d = Math.floor(Math.log10(lo)); d <= Math.ceil(Math.log10(hi)); d++) {
    for (const m of [1, 2, 5]) {
      const v = m * Math.pow(10, d);
      if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v);
    }
  }

  const out = [];
  let y = 62;
  for (const panel of panels) {
    out.push(`<text x="16" y="${y + 4}" class="panel">${esc(panel.title)}</text>`);
    y += 14;
    const top = y;
    for (const r of panel.rows) {
      const cy = y + ROW / 2;
      const cls = r.highlight ? 'hl' : 'peer';
      const p = r.pct;
      out.push(
        `<text x="${LABEL_W - 10}" y="${cy + 4}" text-anchor="end" class="label${r.highlight ? ' bold' : ''}">${esc(r.label)}</text>`,
        `<line x1="${x(p[5])}" x2="${x(p[95])}" y1="${cy}" y2="${cy}" class="whisker ${cls}"/>`,
        `<line x1="${x(p[5])}" x2="${x(p[5])}" y1="${cy - 5}" y2="${cy + 5}" class="whisker ${cls}"/>`,
        `<line x1="${x(p[95])}" x2="${x(p[95])}" y1="${cy - 5}" y2="${cy + 5}" class="whisker ${cls}"/>`,
        `<rect x="${x(p[25])}" y="${cy - BOX / 2}" width="${Math.max(1.5, x(p[75]) - x(p[25]))}" height="${BOX}" class="box ${cls}"/>`,
        `<line x1="${x(p[50])}" x2="${x(p[50])}" y1="${cy - BOX / 2 - 2}" y2="${cy + BOX / 2 + 2}" class="median"/>`,
        `<circle cx="${x(p[99])}" cy="${cy}" r="2.6" class="p99 ${cls}"/>`,
        `<text x="${Math.min(Math.max(x(p[95]), x(p[99])), W - RIGHT) + 8}" y="${cy + 4}" class="value">${fmt(p[50])} ms</text>`,
      );
      y += ROW;
    }
    for (const t of ticks) {
      out.push(`<line x1="${x(t)}" x2="${x(t)}" y1="${top}" y2="${y}" class="grid"/>`);
    }
    for (const m of panel.marks ?? []) {
      if (!(m.at > lo && m.at < hi)) continue;
      out.push(
        `<line x1="${x(m.at)}" x2="${x(m.at)}" y1="${top - 2}" y2="${y}" class="goal"/>`,
        `<text x="${x(m.at) + 4}" y="${y - 4}" class="goaltext">${esc(m.label)}</text>`,
      );
    }
    out.push(`<line x1="${LABEL_W}" x2="${W - RIGHT}" y1="${y}" y2="${y}" class="axis"/>`);
    for (const t of ticks) {
      out.push(`<text x="${x(t)}" y="${y + 14}" text-anchor="middle" class="tick">${t >= 1 ? t : t.toString()}</text>`);
    }
    out.push(`<text x="${W - RIGHT}" y="${y + 28}" text-anchor="end" class="tick">milliseconds, log scale</text>`);
    y += 46;
  }
  const H = y + 22;
  const legendY = H - 14;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
<style>
  .title { font-size: 17px; font-weight: bold; fill: #111; }
  .sub { font-size: 11.5px; fill: #555; }
  .panel { font-size: 13px; font-weight: bold; fill: #333; }
  .label { font-size: 12px; fill: #222; }
  .bold { font-weight: bold; }
  .value { font-size: 11px; fill: #333; }
  .tick { font-size: 10.5px; fill: #666; }
  .grid { stroke: #e4e4e4; stroke-width: 1; }
  .axis { stroke: #999; stroke-width: 1; }
  .whisker { stroke-width: 1.4; }
  .box { stroke-width: 1.2; }
  .median { stroke: #111; stroke-width: 2.2; }
  .hl { stroke: #b4451f; fill: #f3b38f; }
  .peer { stroke: #44617b; fill: #b8cde0; }
  .p99 { stroke-width: 1; }
  .goal { stroke: #2b8a3e; stroke-width: 1.3; stroke-dasharray: 5 3; }
  .goaltext { font-size: 10.5px; fill: #2b8a3e; }
</style>
<rect width="${W}" height="${H}" fill="#fff"/>
<text x="16" y="26" class="title">${esc(title)}</text>
<text x="16" y="44" class="sub">${esc(subtitle)}</text>
${out.join('\n')}
<text x="16" y="${legendY}" class="sub">Box: p25–p75, black bar: median (value printed), whiskers: p5–p95, dot: p99. Green dashes: the issue's goal for nsbox's median. Lower is better.</text>
</svg>
`;
}
