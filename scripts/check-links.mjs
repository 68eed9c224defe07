#!/usr/bin/env node
// scripts/check-links.mjs: checks that the repository's Markdown stands on its own.
//
//   node scripts/check-links.mjs [--quiet]
//
// It reads every tracked *.md file (git ls-files) and finds, outside fenced code blocks:
//   - links: [text](target), ![alt](target), [id]: target, <scheme:...>, href="..." and src="...",
//     and bare http(s) URLs in prose (GitHub turns those into links);
//   - bare relative paths in prose or `code`: ../x, and paths whose first segment is a tracked
//     top-level entry of the repository (docs/..., tests/..., services/...).
// It fails on:
//   - a link that leaves the repository: any URL with a scheme (http:, https:, mailto:...) or a
//     protocol-relative //host, unless listed in ALLOWED_URLS (empty: no link leaves the
//     repository), and any relative link or ../ path that resolves outside the repository root;
//   - a relative link, or a bare path, to a file or directory that git does not track;
//   - a #fragment that names no heading of the target Markdown file (GitHub's heading ids).
// Bare paths with a placeholder in them (<x>, {x}, *, ..., NNNN, $X) are reported and skipped.
// A path relative to the Markdown file's own directory is accepted too, when it exists there; a
// ./x or other path that is not a repository path and exists nowhere is taken for a value, not
// a path (`./nats.conf` in a settings table), and skipped.
//
// It prints what it found, one line per link or path, then a summary; with --quiet only the
// failures and the summary. Exit status 0 when nothing failed, 1 otherwise, 2 on a usage error.
// Node 18 or newer, no dependencies.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** URLs that may leave the repository, if one ever proves essential. None today. */
const ALLOWED_URLS = new Set([]);

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const args = process.argv.slice(2);
const quiet = args.includes('--quiet');
if (args.some((a) => a !== '--quiet')) {
  process.stderr.write('usage: node scripts/check-links.mjs [--quiet]\n');
  process.exit(2);
}

/** Every tracked path, relative to ROOT with '/' separators. */
function trackedFiles() {
  const out = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  return out.split('\0').filter(Boolean);
}

const files = trackedFiles();
const fileSet = new Set(files);
const dirSet = new Set();
for (const f of files) {
  const parts = f.split('/');
  for (let i = 1; i < parts.length; i++) dirSet.add(parts.slice(0, i).join('/'));
}
const topLevel = new Set(files.map((f) => f.split('/')[0]));
const markdown = files.filter((f) => f.endsWith('.md')).sort();

/** The repository-relative form of an absolute path, or null when it is outside the repository. */
function inRepo(abs) {
  const rel = relative(ROOT, abs);
  if (rel === '') return '';
  if (rel === '..' || rel.startsWith(`..${sep}`) || resolve(ROOT, rel) !== abs) return null;
  return rel.split(sep).join('/');
}

/** True if `rel` (repository-relative, '/' separators, maybe with a trailing '/') is tracked. */
function exists(rel) {
  const p = rel.replace(/\/+$/, '');
  return p === '' || fileSet.has(p) || dirSet.has(p);
}

/** GitHub's id of a heading: lower case, markup and punctuation dropped, spaces to '-'. */
function slug(text) {
  const plain = text
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // links and images: their text
    .replace(/<[^>]+>/g, '') // inline HTML
    .replace(/[`*_~]/g, (c) => (c === '_' ? '_' : '')); // emphasis and code marks
  return plain
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

const anchorCache = new Map();

/** The heading ids of a tracked Markdown file (with GitHub's -1, -2 suffixes for repeats). */
function anchorsOf(rel) {
  if (anchorCache.has(rel)) return anchorCache.get(rel);
  const ids = new Set();
  const seen = new Map();
  let fence = null;
  for (const line of readFileSync(join(ROOT, rel), 'utf8').split('\n')) {
    const f = line.match(/^\s{0,3}(`{3,}|~{3,})/);
    if (f) {
      if (fence === null) fence = f[1][0];
      else if (f[1][0] === fence) fence = null;
      continue;
    }
    if (fence !== null) continue;
    const h = line.match(/^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/);
    if (!h) continue;
    const base = slug(h[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    ids.add(n === 0 ? base : `${base}-${n}`);
  }
  for (const m of readFileSync(join(ROOT, rel), 'utf8').matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) ids.add(m[1]);
  anchorCache.set(rel, ids);
  return ids;
}

const PLACEHOLDER = /[<>{}*$…]|\.\.\.|NNNN/;
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;

let failures = 0;
let found = 0;
let skipped = 0;

function report(file, lineNo, kind, target, verdict, ok) {
  found += 1;
  if (!ok) failures += 1;
  if (ok && quiet) return;
  process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${file}:${lineNo}: ${kind} ${target}${verdict ? ` (${verdict})` : ''}\n`);
}

/** Checks a link target written in `file` (repository-relative). Returns [ok, verdict]. */
function checkLink(file, target) {
  const t = target.trim();
  if (t === '') return [false, 'empty link'];
  if (SCHEME.test(t) || t.startsWith('//')) {
    if (ALLOWED_URLS.has(t)) return [true, 'allowed external URL'];
    return [false, 'leaves the repository'];
  }
  const hash = t.indexOf('#');
  const pathPart = decodeURIComponent(hash >= 0 ? t.slice(0, hash) : t).split('?')[0];
  const fragment = hash >= 0 ? decodeURIComponent(t.slice(hash + 1)) : null;
  let rel = file;
  if (pathPart !== '') {
    const abs = pathPart.startsWith('/') ? join(ROOT, pathPart) : resolve(ROOT, dirname(file), pathPart);
    rel = inRepo(normalize(abs));
    if (rel === null) return [false, 'leaves the repository'];
    if (!exists(rel)) return [false, 'no such file in the repository'];
  }
  if (fragment !== null && fragment !== '') {
    const target = rel.replace(/\/+$/, '');
    if (!target.endsWith('.md')) return [true, 'fragment not checked: not Markdown'];
    if (!anchorsOf(target).has(fragment)) return [false, `no heading #${fragment} in ${target}`];
  }
  return [true, ''];
}

/** Checks a bare path token; returns [kind, ok, verdict] or null when it is not a path. */
function checkBarePath(file, token) {
  const t = token.replace(/[.,;:)]+$/, '');
  if (!t.includes('/') || /\s/.test(t) || SCHEME.test(t) || t.startsWith('//')) return null;
  if (!/^[A-Za-z0-9_.\-/<>{}*$…]+$/.test(t)) return null;
  // ./x is read like x: a setting's value (`./nats.conf`) is often relative to another file.
  if (t.startsWith('./')) return checkBarePath(file, t.slice(2));
  const explicit = t.startsWith('../');
  const first = t.split('/')[0];
  if (!explicit && !topLevel.has(first)) {
    // Perhaps relative to the Markdown file's directory (tests/deploy/images/README.md: nats/...).
    if (PLACEHOLDER.test(t)) return null;
    const rel = inRepo(normalize(resolve(ROOT, dirname(file), t)));
    return rel !== null && exists(rel) ? ['path', true, `relative to ${dirname(file)}`] : null;
  }
  if (explicit) {
    const rel = inRepo(normalize(resolve(ROOT, dirname(file), t)));
    if (rel === null) return ['path', false, 'leaves the repository'];
    if (PLACEHOLDER.test(t)) return ['path', true, 'placeholder: not checked'];
    return exists(rel) ? ['path', true, ''] : ['path', false, 'no such file in the repository'];
  }
  if (PLACEHOLDER.test(t)) return ['path', true, 'placeholder: not checked'];
  if (exists(t)) return ['path', true, ''];
  const rel = inRepo(normalize(resolve(ROOT, dirname(file), t)));
  if (rel !== null && exists(rel)) return ['path', true, `relative to ${dirname(file)}`];
  return ['path', false, 'no such file in the repository'];
}

for (const file of markdown) {
  const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
  let fence = null;
  let inComment = false;
  lines.forEach((raw, i) => {
    const lineNo = i + 1;
    const f = raw.match(/^\s{0,3}(?:>\s*)?(`{3,}|~{3,})/);
    if (f) {
      if (fence === null) fence = f[1][0];
      else if (f[1][0] === fence) fence = null;
      return;
    }
    if (fence !== null) return;
    let line = raw;
    // HTML comments are not rendered.
    if (inComment) {
      const end = line.indexOf('-->');
      if (end < 0) return;
      line = line.slice(end + 3);
      inComment = false;
    }
    line = line.replace(/<!--.*?-->/g, '');
    const open = line.indexOf('<!--');
    if (open >= 0) {
      line = line.slice(0, open);
      inComment = true;
    }

    // Inline code: its content is checked as a bare path, never as a link.
    const codes = [];
    line = line.replace(/(`+)(.+?)\1/g, (_, _ticks, code) => {
      codes.push(code.trim());
      return ' ';
    });

    const links = [];
    line = line.replace(/!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^()\s>]*(?:\([^()\s]*\)[^()\s>]*)*)>?(?:\s+"[^"]*")?\s*\)/g, (_, target) => {
      links.push(['link', target]);
      return ' ';
    });
    line = line.replace(/^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$/, (_, target) => {
      links.push(['reference', target]);
      return ' ';
    });
    line = line.replace(/<([A-Za-z][A-Za-z0-9+.-]*:[^\s>]+)>/g, (_, target) => {
      links.push(['autolink', target]);
      return ' ';
    });
    line = line.replace(/\b(?:href|src)\s*=\s*"([^"]*)"/g, (_, target) => {
      links.push(['html', target]);
      return ' ';
    });
    line = line.replace(/\b(?:https?|ftp):\/\/[^\s<>()`"']+|\bwww\.[A-Za-z0-9-]+\.[^\s<>()`"']+/g, (url) => {
      links.push(['url', url.replace(/[.,;:!?]+$/, '')]);
      return ' ';
    });

    for (const [kind, target] of links) {
      const [ok, verdict] = checkLink(file, target);
      report(file, lineNo, kind, target, verdict, ok);
    }
    const tokens = [...codes.flatMap((c) => c.split(/\s+/)), ...line.split(/[\s()[\]"'|]+/)];
    for (const token of tokens) {
      const r = checkBarePath(file, token);
      if (r === null) continue;
      const [kind, ok, verdict] = r;
      if (verdict.startsWith('placeholder')) skipped += 1;
      report(file, lineNo, kind, token, verdict, ok);
    }
  });
}

process.stdout.write(
  `check-links: ${markdown.length} Markdown files, ${found} links and paths found` +
    ` (${skipped} with placeholders, not checked), ${failures} failed\n`,
);
process.exit(failures === 0 ? 0 : 1);
