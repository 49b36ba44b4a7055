// Storybook's `staticDirs` (.storybook/main): directories served as they are
// at a URL path, e.g. the repository's public/ at `/` for images and fonts its
// stories refer to by absolute URL. Only directories inside the repository are
// served.
import { createReadStream, existsSync, statSync } from 'node:fs';
import path from 'node:path';

const TYPES = {
  '.css': 'text/css',
  '.gif': 'image/gif',
  '.html': 'text/html',
  '.ico': 'image/x-icon',
  '.jpeg': 'image/jpeg',
  '.jpg': 'image/jpeg',
  '.js': 'text/javascript',
  '.json': 'application/json',
  '.mp3': 'audio/mpeg',
  '.mp4': 'video/mp4',
  '.otf': 'font/otf',
  '.pdf': 'application/pdf',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ttf': 'font/ttf',
  '.txt': 'text/plain',
  '.webm': 'video/webm',
  '.webp': 'image/webp',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
};

const isInside = (dir, file) => file === dir || file.startsWith(dir + path.sep);

/**
 * `{ from, to }` pairs (absolute directory, URL path) of main's `staticDirs`
 * entries: `'../public'`, `{ from: '../assets', to: '/assets' }`, and the older
 * `'../assets:/assets'`. Entries outside `repoRoot` are reported and left out.
 */
export function staticDirMappings(entries, { configDir, repoRoot }) {
  const mappings = [];
  for (const entry of Array.isArray(entries) ? entries : []) {
    let from;
    let to = '/';
    if (typeof entry === 'string') {
      const colon = entry.lastIndexOf(':');
      [from, to] = colon > 0 && entry[colon + 1] === '/' ? [entry.slice(0, colon), entry.slice(colon + 1)] : [entry, '/'];
    } else if (entry && typeof entry.from === 'string') {
      from = entry.from;
      to = typeof entry.to === 'string' ? entry.to : '/';
    } else {
      continue;
    }
    const dir = path.resolve(configDir, from);
    if (!isInside(repoRoot, dir)) {
      console.warn(`component studio: staticDirs entry ${JSON.stringify(entry)} is outside the repository: not served`);
      continue;
    }
    mappings.push({ from: dir, to: `/${to.replace(/^\/+|\/+$/g, '')}` });
  }
  return mappings;
}

/** The file under `mapping.from` that `urlPath` names, or null (not under `to`, outside `from`, not a file). */
export function staticFile(mapping, urlPath) {
  const prefix = mapping.to === '/' ? '/' : `${mapping.to}/`;
  if (!urlPath.startsWith(prefix)) return null;
  let rel;
  try {
    rel = decodeURIComponent(urlPath.slice(prefix.length));
  } catch {
    return null;
  }
  const file = path.resolve(mapping.from, `.${path.sep}${rel}`);
  if (!isInside(mapping.from, file)) return null;
  try {
    return statSync(file).isFile() ? file : null;
  } catch {
    return null;
  }
}

// Served by Vite for the studio whatever the repository's static directories hold.
const STUDIO_PATHS = /^\/(@|__studio\/|node_modules\/|index\.html$|$)/;

/**
 * The Vite plugin serving `mappings` (GET and HEAD) ahead of Vite's page
 * fallback, which would answer index.html for them. The studio's own paths
 * (Vite's, the app's files in `studioRoot`) are never shadowed by a file of
 * the repository's.
 */
export function staticDirsPlugin(mappings, studioRoot) {
  const isStudioPath = (urlPath) => STUDIO_PATHS.test(urlPath) || existsSync(path.join(studioRoot, urlPath));
  return {
    name: 'component-studio:storybook-static-dirs',
    configureServer(server) {
      server.middlewares.use((req, res, next) => {
        if ((req.method !== 'GET' && req.method !== 'HEAD') || !req.url) return next();
        const urlPath = req.url.split('?')[0];
        if (isStudioPath(urlPath)) return next();
        const file = mappings.map((mapping) => staticFile(mapping, urlPath)).find(Boolean);
        if (!file) return next();
        res.setHeader('Content-Type', TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream');
        res.setHeader('Cache-Control', 'no-cache');
        if (req.method === 'HEAD') return res.end();
        createReadStream(file).on('error', next).pipe(res);
      });
    },
  };
}
