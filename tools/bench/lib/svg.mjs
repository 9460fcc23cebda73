// A tiny SVG writer for benchmark charts: no dependencies, deterministic output.

const PALETTE = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2'];

export function escapeXml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** Legend in a white box, in a corner of the plot area. */
function legend(out, series, plot, corner = 'top-left') {
  const width = Math.max(...series.map((s) => s.name.length)) * 6.6 + 48;
  const height = series.length * 18 + 10;
  const x0 = corner.endsWith('right') ? plot.x + plot.w - width - 8 : plot.x + 8;
  const y0 = corner.startsWith('bottom') ? plot.y + plot.h - height - 8 : plot.y + 8;
  out.push(
    `<rect x="${x0.toFixed(1)}" y="${y0.toFixed(1)}" width="${width.toFixed(1)}" height="${height}" fill="#ffffff" fill-opacity="0.9" stroke="#d1d5db"/>`,
  );
  series.forEach((s, i) => {
    const ly = y0 + 14 + i * 18;
    const lx = x0 + 8;
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    out.push(
      `<line x1="${lx.toFixed(1)}" x2="${(lx + 22).toFixed(1)}" y1="${ly.toFixed(1)}" y2="${ly.toFixed(1)}" stroke="${s.color}" stroke-width="3"${dash}/>`,
    );
    out.push(
      `<text x="${(lx + 28).toFixed(1)}" y="${ly.toFixed(1)}" dominant-baseline="middle" fill="#111827">${escapeXml(s.name)}</text>`,
    );
  });
}

/** The opening of a chart: svg element, white background, title and optional subtitle at x. */
function chartHead({ width, height, title, subtitle, x }) {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${x}" y="24" font-size="16" font-weight="600" fill="#111827">${escapeXml(title)}</text>`,
  ];
  if (subtitle) out.push(`<text x="${x}" y="44" fill="#4b5563">${escapeXml(subtitle)}</text>`);
  return out;
}

/** Vertical grid lines with their labels, the plot frame and the x-axis label. */
function xAxis(out, { xTicks, x, xFormat, xLabel, m, w, h, height }) {
  for (const t of xTicks) {
    const xx = x(t).toFixed(1);
    out.push(`<line x1="${xx}" x2="${xx}" y1="${m.top}" y2="${m.top + h}" stroke="#e5e7eb"/>`);
    out.push(`<text x="${xx}" y="${m.top + h + 18}" text-anchor="middle" fill="#374151">${escapeXml(xFormat(t))}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${w}" height="${h}" fill="none" stroke="#9ca3af"/>`);
  out.push(`<text x="${m.left + w / 2}" y="${height - 12}" text-anchor="middle" fill="#374151">${escapeXml(xLabel)}</text>`);
}

const fmt = (n) => (Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(6))));

/** Round axis ticks (1, 2, 5 × 10^k) covering [0, max]. */
export function niceTicks(max, count = 6) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks = [];
  for (let v = 0; v <= max + step * 1e-9 && ticks.length < 50; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

/** x position of a percentile on the usual HDR "nines" axis: log10(1 / (1 - p)). */
export function ninesOf(percentile) {
  const rest = 1 - Math.min(percentile, 99.99999) / 100;
  return Math.log10(1 / rest);
}

/**
 * A latency-by-percentile chart (the HDR histogram "percentile distribution" plot).
 * series: [{ name, points: [[percentile, valueMs], …], max? }]; maxNines: 2 → up to p99, 4 → p99.99.
 * hlines: [{ value, label }] drawn dashed (aims). legendAt: 'top-left' | 'top-right' | 'bottom-left' | 'bottom-right'.
 */
export function percentileChart({
  title,
  subtitle = '',
  series,
  maxNines = 4,
  yLabel = 'latency (ms)',
  hlines = [],
  width = 800,
  height = 440,
  legendAt = 'top-left',
}) {
  const m = { top: subtitle ? 64 : 48, right: 24, bottom: 56, left: 64 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  const allValues = series.flatMap((s) => s.points.map((p) => p[1]));
  const yMax = Math.max(1e-3, ...allValues, ...hlines.map((l) => l.value * 1.15));
  const yTicks = niceTicks(yMax);
  const yTop = yTicks[yTicks.length - 1];
  const x = (p) => m.left + (Math.min(ninesOf(p), maxNines) / maxNines) * w;
  const y = (v) => m.top + h - (Math.min(v, yTop) / yTop) * h;
  const out = chartHead({ width, height, title, subtitle, x: m.left });
  for (const t of yTicks) {
    const yy = y(t).toFixed(1);
    out.push(`<line x1="${m.left}" x2="${m.left + w}" y1="${yy}" y2="${yy}" stroke="#e5e7eb"/>`);
    out.push(`<text x="${m.left - 8}" y="${yy}" text-anchor="end" dominant-baseline="middle" fill="#374151">${fmt(t)}</text>`);
  }
  const xTicks = [0, 50, 90, 99, 99.9, 99.99, 99.999].filter((p) => ninesOf(p) <= maxNines + 1e-9);
  for (const p of xTicks) {
    const xx = x(p).toFixed(1);
    out.push(`<line x1="${xx}" x2="${xx}" y1="${m.top}" y2="${m.top + h}" stroke="#e5e7eb"/>`);
    out.push(`<text x="${xx}" y="${m.top + h + 18}" text-anchor="middle" fill="#374151">${p === 0 ? 'min' : `p${fmt(p)}`}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${w}" height="${h}" fill="none" stroke="#9ca3af"/>`);
  out.push(`<text x="${m.left + w / 2}" y="${height - 12}" text-anchor="middle" fill="#374151">percentile</text>`);
  out.push(`<text transform="translate(18 ${m.top + h / 2}) rotate(-90)" text-anchor="middle" fill="#374151">${escapeXml(yLabel)}</text>`);
  for (const l of hlines) {
    const yy = y(l.value).toFixed(1);
    out.push(`<line x1="${m.left}" x2="${m.left + w}" y1="${yy}" y2="${yy}" stroke="#6b7280" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${(m.left + w * 0.42).toFixed(1)}" y="${(Number(yy) - 5).toFixed(1)}" fill="#6b7280">${escapeXml(l.label)}</text>`);
  }
  const colored = series.map((s, i) => ({ ...s, color: s.color ?? PALETTE[i % PALETTE.length] }));
  for (const s of colored) {
    const pts = s.points.map(([p, v]) => `${x(p).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    out.push(`<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="2" stroke-linejoin="round"/>`);
  }
  legend(out, colored, { x: m.left, y: m.top, w, h }, legendAt);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/**
 * A plain line chart. series: [{ name, points: [[x, y], …] }]; x and y start at 0.
 * xFormat formats x tick labels.
 */
export function lineChart({
  title,
  subtitle = '',
  series,
  xLabel,
  yLabel,
  xFormat = fmt,
  width = 800,
  height = 400,
  legendAt = 'bottom-right',
}) {
  const m = { top: subtitle ? 64 : 48, right: 24, bottom: 56, left: 72 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const xTicks = niceTicks(Math.max(1e-3, ...xs), 8);
  const yTicks = niceTicks(Math.max(1e-3, ...ys));
  const xTop = xTicks[xTicks.length - 1];
  const yTop = yTicks[yTicks.length - 1];
  const x = (v) => m.left + (v / xTop) * w;
  const y = (v) => m.top + h - (v / yTop) * h;
  const out = chartHead({ width, height, title, subtitle, x: m.left });
  for (const t of yTicks) {
    const yy = y(t).toFixed(1);
    out.push(`<line x1="${m.left}" x2="${m.left + w}" y1="${yy}" y2="${yy}" stroke="#e5e7eb"/>`);
    out.push(
      `<text x="${m.left - 8}" y="${yy}" text-anchor="end" dominant-baseline="middle" fill="#374151">${escapeXml(t.toLocaleString('en-US'))}</text>`,
    );
  }
  xAxis(out, { xTicks, x, xFormat, xLabel, m, w, h, height });
  out.push(`<text transform="translate(16 ${m.top + h / 2}) rotate(-90)" text-anchor="middle" fill="#374151">${escapeXml(yLabel)}</text>`);
  const colored = series.map((s, i) => ({ ...s, color: s.color ?? PALETTE[i % PALETTE.length] }));
  for (const s of colored) {
    const pts = s.points.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(' ');
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    out.push(`<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="2"${dash} stroke-linejoin="round"/>`);
  }
  legend(out, colored, { x: m.left, y: m.top, w, h }, legendAt);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/**
 * Horizontal bars, one per row: bars: [{ name, value, min?, max?, color?, note? }] (min/max draw a
 * range whisker, note is written after the bar). vlines: [{ value, label }] drawn dashed (aims).
 */
export function barChart({ title, subtitle = '', bars, xLabel, vlines = [], xFormat = (v) => v.toLocaleString('en-US'), width = 800 }) {
  const rowH = 34;
  const labelW = Math.max(...bars.map((b) => b.name.length)) * 6.8 + 16;
  const m = { top: subtitle ? 64 : 48, right: 200, bottom: 56, left: Math.max(96, labelW) };
  const h = bars.length * rowH;
  const height = m.top + h + m.bottom;
  const w = width - m.left - m.right;
  const xTicks = niceTicks(Math.max(1e-3, ...bars.map((b) => b.max ?? b.value), ...vlines.map((l) => l.value)));
  const xTop = xTicks[xTicks.length - 1];
  const x = (v) => m.left + (Math.max(0, v) / xTop) * w;
  const out = chartHead({ width, height, title, subtitle, x: 16 });
  xAxis(out, { xTicks, x, xFormat, xLabel, m, w, h, height });
  bars.forEach((b, i) => {
    const y0 = m.top + i * rowH + 7;
    const bh = rowH - 14;
    const color = b.color ?? PALETTE[i % PALETTE.length];
    out.push(
      `<text x="${m.left - 8}" y="${(y0 + bh / 2).toFixed(1)}" text-anchor="end" dominant-baseline="middle" fill="#111827">${escapeXml(b.name)}</text>`,
    );
    out.push(`<rect x="${m.left}" y="${y0}" width="${(x(b.value) - m.left).toFixed(1)}" height="${bh}" fill="${color}"/>`);
    if (b.min !== undefined && b.max !== undefined && b.max > b.min) {
      const ym = (y0 + bh / 2).toFixed(1);
      out.push(`<line x1="${x(b.min).toFixed(1)}" x2="${x(b.max).toFixed(1)}" y1="${ym}" y2="${ym}" stroke="#111827" stroke-width="1.5"/>`);
      for (const v of [b.min, b.max])
        out.push(
          `<line x1="${x(v).toFixed(1)}" x2="${x(v).toFixed(1)}" y1="${y0 + 4}" y2="${y0 + bh - 4}" stroke="#111827" stroke-width="1.5"/>`,
        );
    }
    if (b.note)
      out.push(
        `<text x="${(x(Math.max(b.value, b.max ?? 0)) + 8).toFixed(1)}" y="${(y0 + bh / 2).toFixed(1)}" dominant-baseline="middle" fill="#374151">${escapeXml(b.note)}</text>`,
      );
  });
  for (const l of vlines) {
    const xx = x(l.value).toFixed(1);
    out.push(`<line x1="${xx}" x2="${xx}" y1="${m.top - 6}" y2="${m.top + h}" stroke="#6b7280" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${xx}" y="${m.top - 10}" text-anchor="middle" fill="#6b7280">${escapeXml(l.label)}</text>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
