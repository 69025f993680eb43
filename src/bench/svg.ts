/** A small log-log line chart in SVG, with no dependencies. */

export interface Series {
  readonly name: string;
  readonly color: string;
  readonly points: readonly (readonly [number, number])[];
}

export interface ChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  readonly xFormat: (v: number) => string;
  readonly yFormat: (v: number) => string;
}

const W = 760;
const H = 460;
const M = { left: 80, right: 20, top: 40, bottom: 110 };

export function lineChartSvg(o: ChartOptions): string {
  const pts = o.series.flatMap((s) => s.points).filter(([x, y]) => x > 0 && y > 0 && Number.isFinite(y));
  if (pts.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"></svg>`;
  const lx = pts.map(([x]) => Math.log10(x));
  const ly = pts.map(([, y]) => Math.log10(y));
  const x0 = Math.floor(Math.min(...lx));
  const x1 = Math.ceil(Math.max(...lx));
  const y0 = Math.floor(Math.min(...ly));
  const y1 = Math.ceil(Math.max(...ly));
  const px = (x: number) => M.left + ((Math.log10(x) - x0) / Math.max(1e-9, x1 - x0)) * (W - M.left - M.right);
  const py = (y: number) => H - M.bottom - ((Math.log10(y) - y0) / Math.max(1e-9, y1 - y0)) * (H - M.top - M.bottom);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`);
  for (let e = y0; e <= y1; e++) {
    const y = py(10 ** e);
    out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    out.push(`<text x="${M.left - 6}" y="${y + 4}" text-anchor="end">${esc(o.yFormat(10 ** e))}</text>`);
  }
  const xs = [...new Set(o.series.flatMap((s) => s.points.map(([x]) => x)))].filter((x) => x > 0).sort((a, b) => a - b);
  for (const x of xs) {
    const X = px(x);
    out.push(`<line x1="${X}" x2="${X}" y1="${M.top}" y2="${H - M.bottom}" stroke="#eee"/>`);
    out.push(`<text x="${X}" y="${H - M.bottom + 16}" text-anchor="middle">${esc(o.xFormat(x))}</text>`);
  }
  out.push(`<text x="${(W + M.left) / 2}" y="${H - M.bottom + 36}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${(H - M.bottom + M.top) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  o.series.forEach((s, i) => {
    const ok = s.points.filter(([x, y]) => x > 0 && y > 0 && Number.isFinite(y));
    if (ok.length) {
      const d = ok.map(([x, y], j) => `${j ? 'L' : 'M'}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ');
      out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
      for (const [x, y] of ok) out.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${s.color}"/>`);
    }
    const ly2 = H - M.bottom + 56 + 16 * (i % 3);
    const lx2 = M.left + 330 * Math.floor(i / 3);
    out.push(`<rect x="${lx2}" y="${ly2 - 9}" width="14" height="4" fill="${s.color}"/>`);
    out.push(`<text x="${lx2 + 20}" y="${ly2}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
