// The seatgate API as the page uses it: JSON in and out, the token in sessionStorage,
// problem+json errors turned into ApiError with the server's detail.

const TOKEN = 'seatgate.token';
const USER = 'seatgate.user';

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `request failed (${status})`);
    this.status = status;
    this.problem = problem || {};
  }
}

export function session() {
  const token = sessionStorage.getItem(TOKEN);
  const user = sessionStorage.getItem(USER);
  return token && user ? { token, user: JSON.parse(user) } : null;
}

export function signIn(auth) {
  sessionStorage.setItem(TOKEN, auth.access_token);
  sessionStorage.setItem(USER, JSON.stringify(auth.user));
}

/** Replaces the stored account (its role may have changed since login). */
export function refreshUser(user) {
  if (session()) sessionStorage.setItem(USER, JSON.stringify(user));
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(USER);
}

export async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  const s = session();
  if (s) init.headers.Authorization = `Bearer ${s.token}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401 && s) signOut();
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** A non-JSON answer (e.g. an SVG) as text, with the caller's token. */
export async function getText(path) {
  const s = session();
  const res = await fetch(path, { headers: s ? { Authorization: `Bearer ${s.token}` } : {} });
  if (!res.ok) throw new ApiError(res.status, null);
  return res.text();
}

export const get = (path) => api('GET', path);
export const post = (path, body, headers) => api('POST', path, body, headers);
export const del = (path) => api('DELETE', path);

/** Minor units to "12.00 EUR". */
export function money(minor, currency) {
  return `${(minor / 100).toFixed(2)} ${currency}`;
}

/**
 * Follows a server-sent-events stream that needs the bearer token (EventSource cannot send
 * one): calls onEvent(name, data) per event until the stream ends or `signal` aborts.
 * Throws ApiError for an error status.
 */
export async function stream(path, onEvent, signal) {
  const s = session();
  const headers = { Accept: 'text/event-stream' };
  if (s) headers.Authorization = `Bearer ${s.token}`;
  const res = await fetch(path, { headers, signal });
  if (!res.ok) {
    const data = await res.json().catch(() => null);
    throw new ApiError(res.status, data);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = 'message';
      let data = null;
      for (const line of frame.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data = JSON.parse(line.slice(6));
      }
      if (data !== null) onEvent(event, data);
    }
  }
}
