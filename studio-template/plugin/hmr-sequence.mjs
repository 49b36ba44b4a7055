// Numbers what Vite's HMR tells the pages, so that the render verdict's page
// can be brought up to an edit by Vite's own hot update instead of a reload
// (studio/render/browser.py, the warm path).
//
// Every message broadcast to the pages carries `studioSeq`, 1, 2, 3, ... A
// page that received every message up to the seq a verdict names has been told
// of the edit; a gap in the seqs it received means it missed one. Vite's client
// ignores the extra field.
//
// `settled(files, since)` says when Vite has finished with the changed files:
// for each, Vite ran the `hotUpdate` hooks (the watcher's event reached its HMR
// handling) and, when the file has modules, invalidated them for HMR
// (`updateModules`, which sends the update or full-reload in the same
// synchronous step, or decides there is nothing to send). Only then is the
// seq of the last message final for the edit.

/** The HMR message log of `server`; the studio plugin's `hotUpdate` hook feeds `noteHotUpdate`. */
export function hmrSequence(server) {
  let seq = 0;
  const hot = server.ws;
  const send = hot.send;
  hot.send = (...args) => {
    const payload = typeof args[0] === 'string' ? { type: 'custom', event: args[0], data: args[1] } : args[0];
    if (payload === null || typeof payload !== 'object') return send.apply(hot, args);
    seq += 1;
    return send.call(hot, { ...payload, studioSeq: seq });
  };

  // file (absolute) -> { at: ms since the epoch, seqBefore, modules, timestamp } of its last hot update
  const updates = new Map();
  const handled = (entry) =>
    entry.modules.length === 0 || seq > entry.seqBefore || entry.modules.every((mod) => (mod.lastHMRTimestamp ?? 0) >= entry.timestamp);

  return {
    get seq() {
      return seq;
    },
    /** Called from the client environment's `hotUpdate` hook (order 'post': the modules Vite will update). */
    noteHotUpdate(options) {
      updates.set(options.file, { at: Date.now(), seqBefore: seq, modules: [...options.modules], timestamp: options.timestamp });
    },
    /** Whether Vite's HMR handled each of `files` (absolute) changed at or after `since` (ms since the epoch). */
    settled(files, since) {
      return files.every((file) => {
        const entry = updates.get(file);
        return entry !== undefined && entry.at >= since && handled(entry);
      });
    },
  };
}
