// The path a request is routed on, normalized as RFC 3986 §6.2.2 says (percent-encoded
// unreserved characters decoded, dot segments removed), so `/x/../api` and `/%61pi` reach the
// service that owns `/api`. The normalized path is also what the app is sent, as nginx does
// with a URI in proxy_pass: the app sees the path it was routed on, and cannot be reached at a
// path outside its prefix by one it would resolve differently.

/** Characters that mean the same percent-encoded or not (RFC 3986 §2.3). */
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * The request target with its path normalized, the query untouched; null when dot segments
 * climb above the root (`/../x`), which nginx refuses with a 400. Targets not in origin form
 * (`*`, `http://host/...`) are returned as they are.
 */
export function normalizeTarget(target: string): string | null {
  if (target.charCodeAt(0) !== 47 /* / */) return target;
  const query = target.indexOf('?');
  const path = query === -1 ? target : target.slice(0, query);
  const encoded = path.includes('%');
  // The common case costs two scans and no allocation.
  if (!encoded && !path.includes('/.')) return target;
  const normalized = removeDotSegments(encoded ? decodeUnreserved(path) : path);
  if (normalized === null) return null;
  return query === -1 ? normalized : normalized + target.slice(query);
}

function decodeUnreserved(path: string): string {
  return path.replace(/%([0-9A-Fa-f]{2})/g, (escape, hex: string) => {
    const character = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(character) ? character : escape;
  });
}

/** RFC 3986 §5.2.4 on an absolute path, except that climbing above the root is an error. */
function removeDotSegments(path: string): string | null {
  const segments = path.split('/');
  const output: string[] = [];
  const last = segments.length - 1;
  for (let i = 1; i <= last; i++) {
    const segment = segments[i]!;
    if (segment === '..') {
      if (output.length === 0) return null;
      output.pop();
    } else if (segment !== '.') {
      output.push(segment);
      continue;
    }
    // `/a/b/..` is `/a/`: a dot segment at the end leaves the directory, with its slash.
    if (i === last) output.push('');
  }
  return `/${output.join('/')}`;
}
