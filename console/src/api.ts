// The console's only way to the server: the public REST API, same origin, with the sign-in
// cookie. Every failure becomes an ApiError carrying the API's own message.

export class ApiError extends Error {
  status: number;
  code: string;
  details: unknown;

  constructor(status: number, code: string, message: string, details: unknown = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export interface RequestOptions {
  query?: Query;
  json?: unknown;
  body?: BodyInit;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** Listeners told when the server says the sign-in is gone (401), so the app shows sign-in. */
const signedOut = new Set<() => void>();
export function onSignedOut(listener: () => void): () => void {
  signedOut.add(listener);
  return () => signedOut.delete(listener);
}

/** The project the console works in ("" for none: everything the caller may see), kept in
 *  this browser. While one is chosen, every API request names it (?project=): lists show the
 *  project's own, and what is made belongs to it (its JSON body says so too). */
const PROJECT_KEY = "cumulo.project";
let project = localStorage.getItem(PROJECT_KEY) ?? "";
export const currentProject = () => project;
export function chooseProject(name: string): void {
  project = name;
  if (name) localStorage.setItem(PROJECT_KEY, name);
  else localStorage.removeItem(PROJECT_KEY);
}
/** The routes that make something in a project from a JSON body. */
const MADE_IN_PROJECT = new Set(["/files/buckets", "/tables/databases", "/tables/crawl",
  "/clusters", "/jobs", "/endpoints", "/streams", "/notebooks"]);

/** An endpoint's invocation route, the one path under /endpoints/ that is not the console's. */
const INVOCATIONS = /^\/endpoints\/[^/]+\/invocations$/;

export function url(path: string, query?: Query): string {
  const base = path.startsWith("/api/") || path.startsWith("/mlflow/") || INVOCATIONS.test(path)
    || path.startsWith("/login") || path === "/logout" ? path : `/api/v1${path}`;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  if (project && base.startsWith("/api/v1/") && !params.has("project")) params.set("project", project);
  const text = params.toString();
  return text ? `${base}?${text}` : base;
}

/** The error an answer carries: the API's {"error": {"code", "message"}} when it sent one. */
export async function errorOf(response: Response): Promise<ApiError> {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    const error = body?.error ?? body;
    if (error && typeof error.message === "string") {
      return new ApiError(response.status, error.code ?? error.error_code ?? "error",
                          error.message, error.details ?? null);
    }
  } catch {
    // not JSON: fall through to the text itself
  }
  const message = text.trim().slice(0, 500) || `${response.status} ${response.statusText}`;
  return new ApiError(response.status, "http_" + response.status, message);
}

export async function send(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { accept: "application/json", ...options.headers };
  let body = options.body;
  if (options.json !== undefined) {
    headers["content-type"] = "application/json";
    let json = options.json;
    if (project && method === "POST" && MADE_IN_PROJECT.has(path) && json !== null
        && typeof json === "object" && !Array.isArray(json) && !("project" in json)) {
      json = { ...json, project };
    }
    body = JSON.stringify(json);
  }
  let response: Response;
  try {
    response = await fetch(url(path, options.query), {
      method, headers, body, signal: options.signal, credentials: "same-origin",
    });
  } catch (exc) {
    if ((exc as Error).name === "AbortError") throw exc;
    throw new ApiError(0, "unreachable", `The server did not answer (${(exc as Error).message}). ` +
                       "Is `cumulo up` still running?");
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) signedOut.forEach((listener) => listener());
    throw error;
  }
  return response;
}

export async function api<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const response = await send(method, path, options);
  if (response.status === 204) return undefined as T;
  const type = response.headers.get("content-type") ?? "";
  if (type.includes("text/html")) {  // the console's own page: a path that is no API route
    throw new ApiError(response.status, "not_api", `${method} ${path} answered a web page, not data: ` +
                       "the console asked for a path the API does not have");
  }
  return (type.includes("json") ? await response.json() : await response.text()) as T;
}

export const get = <T = unknown>(path: string, query?: Query, signal?: AbortSignal) =>
  api<T>("GET", path, { query, signal });
export const post = <T = unknown>(path: string, json?: unknown, query?: Query) =>
  api<T>("POST", path, { json: json ?? {}, query });
export const put = <T = unknown>(path: string, json?: unknown) => api<T>("PUT", path, { json });
export const patch = <T = unknown>(path: string, json?: unknown) => api<T>("PATCH", path, { json });
export const del = <T = unknown>(path: string, query?: Query) => api<T>("DELETE", path, { query });

/** What one signs in with: a user name and password, or a token. */
export type Credentials = { user: string; password: string } | { token: string };

/** Sign in: the server checks the password (or the token) and keeps a session token in an
 *  HttpOnly cookie for this site. */
export async function signIn(credentials: Credentials): Promise<void> {
  await api("POST", "/login", {
    body: new URLSearchParams({ ...credentials, next: "/" }),
    headers: { "content-type": "application/x-www-form-urlencoded" },
  });
}

/** How one may sign in here (single sign-on: the provider's name, when the server has one). */
export interface SignInOptions { password: boolean; token: boolean; sso: string | null }
export const signInOptions = () => get<SignInOptions>("/login/options");

export async function signOut(): Promise<void> {
  await api("POST", "/logout");
}

export interface Me {
  user: string;
  is_admin: boolean;
  token_id: number;
  token_name: string;
  via_job: boolean;
  projects: string[];
}

/** An action and the resource it would be taken on: ["users:Manage", "user/*"]. */
export type Check = [action: string, resource: string];

/** Whether the signed-in caller may take each action (one request for many: the console asks
 *  before it shows a button or a section, and shows only what would work). */
export async function can(checks: Check[], signal?: AbortSignal): Promise<boolean[]> {
  if (checks.length === 0) return [];
  const answer = await api<{ allowed: boolean[] }>("POST", "/me/can", {
    json: { checks, project: project || null }, signal });
  return answer.allowed;
}

/** Upload with progress (fetch cannot report upload progress; XMLHttpRequest can). */
export function upload(path: string, file: Blob, onProgress: (fraction: number) => void,
                       contentType = "application/octet-stream", signal?: AbortSignal): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    const stopped = () => new DOMException("the upload was stopped", "AbortError");
    if (signal?.aborted) { reject(stopped()); return; }
    signal?.addEventListener("abort", () => request.abort(), { once: true });
    request.onabort = () => reject(stopped());
    request.open("PUT", url(path));
    request.setRequestHeader("content-type", contentType);
    request.setRequestHeader("accept", "application/json");
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    request.onload = async () => {
      if (request.status >= 200 && request.status < 300) {
        onProgress(1);
        try { resolve(JSON.parse(request.responseText)); } catch { resolve(request.responseText); }
      } else {
        if (request.status === 401) signedOut.forEach((listener) => listener());
        reject(await errorOf(new Response(request.responseText, { status: request.status })));
      }
    };
    request.onerror = () => reject(new ApiError(0, "unreachable", "the upload was cut off: the server did not answer"));
    request.send(file);
  });
}
