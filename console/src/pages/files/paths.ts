// Keys in URLs: each segment encoded, the slashes kept, so /files/BUCKET/a/b/ reads as a path.
import { url } from "../../api";

export const encodeKey = (key: string) => key.split("/").map(encodeURIComponent).join("/");

export const bucketPath = (bucket: string) => `/files/buckets/${encodeURIComponent(bucket)}`;

/** The API path of an object (for upload(), get(), del()). */
export const objectPath = (bucket: string, key: string) => `${bucketPath(bucket)}/objects/${encodeKey(key)}`;

/** The download URL: the GET route itself, which the sign-in cookie opens. */
export const downloadUrl = (bucket: string, key: string) => url(objectPath(bucket, key));

/** The console's page of a bucket at a prefix ("" or ending with "/"). */
export const browseLink = (bucket: string, prefix = "") =>
  prefix ? `/files/${encodeURIComponent(bucket)}/${encodeKey(prefix)}` : `/files/${encodeURIComponent(bucket)}`;

/** The last segment of a key or prefix: what a file browser shows as its name. */
export function baseName(key: string): string {
  const trimmed = key.endsWith("/") ? key.slice(0, -1) : key;
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

export interface Bucket {
  name: string;
  objects: number;
  bytes: number;
  created_at: string;
  created_by: string | null;
}

export interface StoredObject {
  bucket: string;
  key: string;
  size: number;
  sha256: string;
  content_type: string;
  created_at: string;
  created_by: string | null;
  modified_at: string;
  modified_by: string | null;
}

export interface ObjectList {
  bucket: string;
  prefix: string;
  delimiter: string | null;
  objects: StoredObject[];
  prefixes: string[];
  next_cursor: string | null;
}
