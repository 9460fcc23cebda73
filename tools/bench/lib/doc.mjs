// Rewrites one generated section of a markdown file between `<!-- bench:<key>:start -->` and
// `<!-- bench:<key>:end -->`, creating the file (from `intro`) or appending the markers when missing.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export const markers = (key) => [`<!-- bench:${key}:start -->`, `<!-- bench:${key}:end -->`];

export function replaceSection(text, key, body) {
  const [start, end] = markers(key);
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  const block = `${start}\n${body.trim()}\n${end}`;
  if (i === -1 || j === -1 || j < i) return `${text.trimEnd()}\n\n${block}\n`;
  return `${text.slice(0, i)}${block}${text.slice(j + end.length)}`;
}

/** sections: { key: markdown }; keys whose markers exist are replaced, others appended. */
export function updateDoc(path, intro, sections) {
  let text = existsSync(path) ? readFileSync(path, 'utf8') : intro;
  for (const [key, body] of Object.entries(sections)) text = replaceSection(text, key, body);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text.endsWith('\n') ? text : `${text}\n`);
}
