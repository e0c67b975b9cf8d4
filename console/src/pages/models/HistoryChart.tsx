// A tuning study's optimization history: each trial's objective as a dot, the best so far as a
// line (the shared Chart draws one kind per chart; this one needs both).
import { useRef } from "react";
import { ticks, useWidth, YGrid } from "../../components/Chart";
import { number as fmt } from "../../format";

export function HistoryChart({ points, direction, objective, height = 260 }: {
  points: { trial: number; value: number }[];
  direction: "maximize" | "minimize";
  objective: string;
  height?: number;
}) {
  const box = useRef<HTMLElement>(null);
  const width = useWidth(box, points.length > 0);
  const sorted = [...points].sort((a, b) => a.trial - b.trial);
  if (!sorted.length) {
    return <figure ref={box} className="chart chart-empty" style={{ height }}>No trial has completed yet</figure>;
  }
  const better = (a: number, b: number) => direction === "maximize" ? a > b : a < b;
  let best = sorted[0].value;
  const bests = sorted.map((p) => { if (better(p.value, best)) best = p.value; return { trial: p.trial, value: best }; });

  const margin = { top: 12, right: 16, bottom: 42, left: 64 };
  const w = width - margin.left - margin.right;
  const h = height - margin.top - margin.bottom;
  let [x0, x1] = [sorted[0].trial, sorted[sorted.length - 1].trial];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const ys = sorted.map((p) => p.value);
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const pad = (y1 - y0) * 0.08;
  y0 -= pad; y1 += pad;
  const sx = (x: number) => ((x - x0) / (x1 - x0)) * w;
  const sy = (y: number) => h - ((y - y0) / (y1 - y0)) * h;
  const yTicks = ticks(y0, y1, 5);
  const xTicks = ticks(x0, x1, Math.max(2, Math.min(sorted.length, Math.floor(w / 60))))
    .filter((t) => Number.isInteger(t) && t >= sorted[0].trial && t <= sorted[sorted.length - 1].trial);
  const line = bests.flatMap((p, i) => i === 0 ? [`${sx(p.trial)},${sy(p.value)}`]
    : [`${sx(p.trial)},${sy(bests[i - 1].value)}`, `${sx(p.trial)},${sy(p.value)}`]).join(" ");
  return (
    <figure ref={box} className="chart" aria-label="Optimization history">
      <figcaption>Optimization history</figcaption>
      <svg width={width} height={height} role="img" aria-label={`${objective} per trial, and the best so far`}>
        <g transform={`translate(${margin.left},${margin.top})`}>
          <YGrid ticks={yTicks} y={sy} width={w} />
          {xTicks.map((t) => <text key={`x${t}`} x={sx(t)} y={h + 16} textAnchor="middle" className="tick">{t}</text>)}
          <line y1={h} y2={h} x2={w} className="axis" />
          <polyline fill="none" stroke="#e0663a" strokeWidth={2} points={line} />
          {sorted.map((p) => (
            <circle key={p.trial} cx={sx(p.trial)} cy={sy(p.value)} r={4.5} fill="#2f6fde" fillOpacity={0.8}>
              <title>{`trial ${p.trial}: ${objective} ${fmt(p.value, 6)}`}</title>
            </circle>
          ))}
          <text x={w / 2} y={h + 34} textAnchor="middle" className="axis-label">trial</text>
          <text transform={`translate(${-50},${h / 2}) rotate(-90)`} textAnchor="middle" className="axis-label">{objective}</text>
        </g>
      </svg>
      <div className="legend">
        <span><i style={{ background: "#2f6fde" }} />{objective} of each trial</span>
        <span><i style={{ background: "#e0663a" }} />best so far ({direction})</span>
      </div>
    </figure>
  );
}
