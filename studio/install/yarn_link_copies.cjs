// Loaded into yarn classic by studio.install.managers (NODE_OPTIONS=--require):
// each file yarn copies out of its cache folder is hard-linked instead.
//
// Yarn 1 has no hard-link mode: with a warm cache it still copies every file
// of every package into node_modules (65k files, 30 s, most of it the kernel
// copying, for chromaui/learnstorybook-design-system on the 2-core machine).
// Everything else stays yarn's own: its layout, its .bin links, its integrity
// file. Before it copies, yarn unlinks the destination (fs-normalized's
// copyFile), so a link is made on a fresh name, never written through. Only
// with dependencies' scripts off: a script could rewrite its package's files
// in place, and through a link that would be the cache's copy. A file from
// anywhere else is copied as before, and so is one that cannot be linked
// (another filesystem). (A `file:` dependency comes from the cache too: yarn
// caches it before it copies it.)
'use strict';

const fs = require('fs');
const path = require('path');

const cache = process.env.STUDIO_YARN_LINK_FROM;
if (cache) {
  const prefix = path.resolve(cache) + path.sep;
  const copyFile = fs.copyFile;
  fs.copyFile = function copyFileByLink(src, dest, flags, callback) {
    if (typeof flags === 'function') {
      callback = flags;
      flags = 0;
    }
    if (typeof src !== 'string' || !path.resolve(src).startsWith(prefix)) {
      copyFile.call(fs, src, dest, flags, callback);
      return;
    }
    fs.link(src, dest, (error) => {
      if (error) {
        copyFile.call(fs, src, dest, flags, callback);
      } else {
        callback(null);
      }
    });
  };
}
