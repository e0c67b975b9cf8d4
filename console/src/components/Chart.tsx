import { useEffect, useRef, useState } from "react";
import { number as fmt } from "../format";

export interface Point {
  x: number | string;
  y: number;
}

export interface Series {
  name: string;
  points: Point[];
}

export type ChartKind = "line" | "bar" | "scatter";

const COLORS = ["#2f6fde", "#e0663a", "#2a9d6f", "#9b59b6", "#d4a72c", "#5a6b7d", "#c0392b"];

/** A small SVG chart (line, bar or scatter) sized to its container, with axes and a legend.
 *  x may be numbers, times (xTime: seconds or ms since the epoch) or categories (strings). */
export function Chart({ series, kind = "line", height = 220, xLabel, yLabel, xTime = false, title }: {
  series: Series[];
  kind?: ChartKind;
  height?: number;
  xLabel?: string;
  yLabel?: string;
  xTime?: boolean;
  title?: string;
}) {
  const box = useRef<HTMLElement>(null);
  const hasPoints = series.some((s) => s.points.length > 0);
  const width = useWidth(box, hasPoints);

  const points = series.flatMap((s) => s.points);
  const categorical = points.some((p) => typeof p.x === "string");
  const categories = categorical ? [...new Set(points.map((p) => String(p.x)))] : [];
  const margin = { top: 12, right: 16, bottom: 42, left: 60 };
  const w = width - margin.left - margin.right;
  const h = height - margin.top - margin.bottom;

  if (!hasPoints) {
    return <div ref={box as React.RefObject<HTMLDivElement>} className="chart chart-empty" style={{ height }}>No data to chart yet</div>;
  }
  const xs = categorical ? [] : points.map((p) => Number(p.x));
  const ys = points.map((p) => p.y).filter((y) => Number.isFinite(y));
  let [x0, x1] = categorical ? [0, categories.length] : [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  let y0 = Math.min(0, ...ys);
  let y1 = Math.max(...ys);
  if (kind !== "bar" && ys.length) y0 = Math.min(...ys);
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const pad = (y1 - y0) * 0.05;
  if (kind !== "bar") { y0 -= pad; }
  y1 += pad;

  const band = categorical ? w / Math.max(1, categories.length) : 0;
  const sx = (x: number | string) => categorical
    ? categories.indexOf(String(x)) * band + band / 2
    : ((Number(x) - x0) / (x1 - x0)) * w;
  const sy = (y: number) => h - ((y - y0) / (y1 - y0)) * h;
  const yTicks = ticks(y0, y1, 5);
  const xTicks = categorical ? [] : ticks(x0, x1, Math.max(2, Math.floor(w / 110)));
  const xText = (x: number) => xTime ? new Date(x * (x < 1e12 ? 1000 : 1)).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : fmt(x, 3);
  const every = categorical ? Math.max(1, Math.ceil(categories.length / Math.max(1, w / 70))) : 1;
  const barWidth = categorical ? Math.max(2, (band * 0.8) / Math.max(1, series.length)) : 6;

  return (
    <figure ref={box} className="chart" aria-label={title ?? yLabel ?? "chart"}>
      {title && <figcaption>{title}</figcaption>}
      <svg width={width} height={height} role="img" aria-label={`${title ?? yLabel ?? "chart"}: ${series.map((s) => `${s.name}, ${s.points.length} points`).join("; ")}`}>
        <g transform={`translate(${margin.left},${margin.top})`}>
          <YGrid ticks={yTicks} y={sy} width={w} />
          {xTicks.map((t) => (
            <text key={`x${t}`} x={sx(t)} y={h + 16} className="tick"
                  textAnchor={sx(t) > w - 30 ? "end" : sx(t) < 30 ? "start" : "middle"}>{xText(t)}</text>
          ))}
          {categories.map((c, i) => i % every === 0 && (
            <text key={`c${c}`} x={sx(c)} y={h + 16} textAnchor="middle" className="tick">
              {c.length > 12 ? c.slice(0, 11) + "…" : c}
            </text>
          ))}
          <line y1={h} y2={h} x2={w} className="axis" />
          {series.map((s, si) => {
            const color = COLORS[si % COLORS.length];
            const valid = s.points.filter((p) => Number.isFinite(p.y));
            if (kind === "bar") {
              return valid.map((p, pi) => (
                <rect key={`${si}-${pi}`} x={sx(p.x) - (barWidth * series.length) / 2 + si * barWidth}
                      y={Math.min(sy(p.y), sy(Math.max(0, y0)))} width={barWidth - 1}
                      height={Math.abs(sy(Math.max(0, y0)) - sy(p.y))} fill={color}>
                  <title>{`${s.name} · ${p.x}: ${fmt(p.y)}`}</title>
                </rect>
              ));
            }
            const sorted = categorical ? valid : [...valid].sort((a, b) => Number(a.x) - Number(b.x));
            return (
              <g key={s.name}>
                {kind === "line" && (
                  <polyline fill="none" stroke={color} strokeWidth={2}
                            points={sorted.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" ")} />
                )}
                {sorted.map((p, i) => (
                  <circle key={i} cx={sx(p.x)} cy={sy(p.y)} r={kind === "scatter" ? 4 : sorted.length > 60 ? 0 : 3}
                          fill={color}>
                    <title>{`${s.name} · ${xTime ? xText(Number(p.x)) : p.x}: ${fmt(p.y)}`}</title>
                  </circle>
                ))}
              </g>
            );
          })}
          {xLabel && <text x={w / 2} y={h + 34} textAnchor="middle" className="axis-label">{xLabel}</text>}
          {yLabel && (
            <text transform={`translate(${-46},${h / 2}) rotate(-90)`} textAnchor="middle" className="axis-label">
              {yLabel}
            </text>
          )}
        </g>
      </svg>
      {series.length > 1 && (
        <div className="legend">
          {series.map((s, i) => (
            <span key={s.name}><i style={{ background: COLORS[i % COLORS.length] }} />{s.name}</span>
          ))}
        </div>
      )}
    </figure>
  );
}

/** The y axis's round values, each with its grid line across the plot. */
export function YGrid({ ticks: values, y, width }: { ticks: number[]; y: (value: number) => number; width: number }) {
  return values.map((t) => (
    <g key={`y${t}`} transform={`translate(0,${y(t)})`}>
      <line x2={width} className="grid-line" />
      <text x={-6} dy="0.32em" textAnchor="end" className="tick">{fmt(t, 3)}</text>
    </g>
  ));
}

/** The width of the element `box` holds, followed as it changes. Pass as `drawn` what decides
 *  which element is drawn (the empty box and the chart are different elements). */
export function useWidth(box: React.RefObject<HTMLElement | null>, drawn: unknown): number {
  const [width, setWidth] = useState(600);
  useEffect(() => {
    if (!box.current) return;
    const observer = new ResizeObserver(([entry]) => setWidth(Math.max(240, entry.contentRect.width)));
    observer.observe(box.current);
    return () => observer.disconnect();
  }, [box, drawn]);
  return width;
}

/** Round tick values between lo and hi, about `count` of them. */
export function ticks(lo: number, hi: number, count: number): number[] {
  const step0 = (hi - lo) / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= step0) ?? step0;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}
