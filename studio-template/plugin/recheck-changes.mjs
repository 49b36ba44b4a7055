// Vite's file watcher (the chokidar it bundles) passes on one 'change' of a
// file per 50 ms and drops the others (FSWatcher._throttle): an agent that
// writes a file again within 50 ms of the change Vite saw would leave the page
// on the first version, with nothing left to tell Vite. So each change is
// looked at again once that window has passed, and if the file changed since,
// the change Vite missed is emitted then.
import { statSync } from 'node:fs';

// chokidar's window for 'change' events of one path (not configurable)
export const CHANGE_THROTTLE_MS = 50;
const RECHECK_MS = CHANGE_THROTTLE_MS + 15;

/** What tells two versions of a file apart without reading it; null once it is gone. */
function signature(file) {
  try {
    const stats = statSync(file, { bigint: true });
    return `${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
  } catch {
    return null;
  }
}

/**
 * Re-emits on `watcher` the changes its throttle dropped; returns a function
 * that cancels the pending checks (the server is closing).
 */
export function recheckChanges(watcher) {
  const pending = new Map(); // file -> { seen, timer }: the version Vite was told about

  const recheck = (file) => {
    const entry = pending.get(file);
    pending.delete(file);
    const now = signature(file);
    // emitted directly: chokidar's own emit would throttle it again
    if (entry && now !== null && now !== entry.seen) watcher.emit('change', file);
  };

  watcher.on('change', (file) => {
    const entry = pending.get(file);
    if (entry) clearTimeout(entry.timer);
    // Vite reads the file after this event: what it reads is at least this version
    pending.set(file, { seen: signature(file), timer: setTimeout(recheck, RECHECK_MS, file) });
  });

  return () => {
    for (const { timer } of pending.values()) clearTimeout(timer);
    pending.clear();
  };
}
