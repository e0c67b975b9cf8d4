// Streams: the shapes the streams API answers with (src/cumulo/streams/api.py), and what the
// pages derive from them: retention in words, hash-key shares, records' data as text.

export interface HashKeyRange { start: string; end: string }

export interface StreamShard {
  shard_id: string;
  parent: string | null;
  adjacent_parent: string | null;
  hash_key_range: HashKeyRange;
  starting_sequence_number: string;
  ending_sequence_number: string | null;
  records: number;
  bytes: number;
  open: boolean;
}

/** A consumer group as `show` tells it: its live members, and per shard its holder,
 *  checkpoint and lag. */
export interface ConsumerGroup {
  group: string;
  members: { member: string; label: string | null; joined_at: string; shards: string[] }[];
  shards: { shard_id: string; owner: string | null; checkpoint: string | null; behind: number;
            millis_behind: number }[];
  behind: number;
}

/** A delivery into a lake table (Firehose), with its lag: records not in the table yet, and
 *  how long ago the oldest of them arrived. */
export interface Delivery {
  name: string;
  table: string;
  errors_table?: string;
  state: string;
  error?: string | null;
  buffer?: string;
  partition_by?: string | null;
  transform?: string | null;
  records: number;
  failed: number;
  delivered_at?: string | null;
  table_version?: number | null;
  behind: number;
  millis_behind: number;
}

export interface Stream {
  name: string;
  status: string;
  retention_hours: number;
  created_at: string;
  shards: StreamShard[];
  records: number;
  bytes: number;
  groups?: ConsumerGroup[];
  deliveries?: Delivery[];
}

/** A record as GET /streams/{name}/records answers it. */
export interface WireRecord {
  sequence_number: string;
  arrived: number;
  partition_key: string;
  data_base64: string;
}

export interface RecordsPage {
  shard_id: string;
  records: WireRecord[];
  millis_behind: number;
  iterator: string | null;
  child_shards: string[];
}

export const streamPath = (name: string, rest = "") => `/streams/${encodeURIComponent(name)}${rest}`;

export const NAME_RULE = /^[A-Za-z0-9_.-]{1,128}$/;
export const NAME_HINT = "1-128 letters, digits, '_', '.' and '-'";
export const MAX_SHARDS = 256;

/** 24 hours as "24 h", 168 as "7 d". */
export function retentionText(hours: number): string {
  return hours % 24 === 0 && hours >= 48 ? `${hours / 24} d` : `${hours} h`;
}

const KEY_SPACE = 1n << 128n;

/** The share of the hash-key space a range takes, as a percent ("25%", "12.5%"). */
export function keyShare(range: HashKeyRange): string {
  try {
    const width = BigInt(range.end) - BigInt(range.start) + 1n;
    const basisPoints = Number((width * 1_000_000n) / KEY_SPACE) / 10_000;
    return `${Number(basisPoints.toPrecision(4))}%`;
  } catch {
    return "—";
  }
}

/** A 39-digit hash key cut to its ends, for a table cell (the whole key in its title). */
export function shortKey(key: string): string {
  return key.length > 14 ? `${key.slice(0, 6)}…${key.slice(-6)}` : key;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A record's data as text, or "base64:..." when it is not UTF-8 (as `cumulo streams get`
 *  prints it), and its size in bytes. */
export function dataText(base64: string): { text: string; size: number; binary: boolean } {
  const raw = atob(base64);
  const bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
  try {
    return { text: utf8.decode(bytes), size: bytes.length, binary: false };
  } catch {
    return { text: `base64:${base64}`, size: bytes.length, binary: true };
  }
}

/** Sequence numbers are decimal strings of up to 56 digits: compared as numbers. */
export function compareSequences(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

/** A time of day to the millisecond (a record's arrival). */
export function clock(epochSeconds: number): string {
  const date = new Date(epochSeconds * 1000);
  const ms = String(date.getMilliseconds()).padStart(3, "0");
  return `${date.toLocaleTimeString("en-GB")}.${ms}`;
}
