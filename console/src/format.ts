// How numbers, sizes, money and times read in the console.

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Dollars, with enough digits that a few CPU-seconds do not read as $0.00. */
export function dollars(n: number | null | undefined): string {
  if (n === null || n === undefined) return "—";
  if (n === 0) return "$0.00";
  if (Math.abs(n) >= 0.01) return `$${n.toFixed(2)}`;
  return `$${Number(n.toPrecision(2)).toFixed(Math.min(10, 1 - Math.floor(Math.log10(Math.abs(n)))))}`;
}

export function number(n: number | null | undefined, digits = 4): string {
  if (n === null || n === undefined) return "—";
  if (Number.isInteger(n)) return n.toLocaleString("en-US");
  return Number(n.toPrecision(digits)).toString();
}

export function seconds(s: number | null | undefined): string {
  if (s === null || s === undefined) return "—";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function when(iso: string | number | null | undefined): string {
  if (iso === null || iso === undefined || iso === "") return "—";
  const date = typeof iso === "number" ? new Date(iso * (iso < 1e12 ? 1000 : 1)) : new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "medium" });
}

/** A cell's text in a grid: objects as JSON, null as an em dash. */
export function cell(value: unknown): string {
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
