// Lints every file in migrations/ with Squawk (its x86-64 Linux binary package, pinned in package.json), a linter for
// PostgreSQL migrations: what takes a long lock, rewrites or scans a table, or cannot run inside
// the transaction `cart-store migrate` wraps each file in. The rules a migration follows, and why:
// docs/internals/migrations.md.
//
// A finding fails the suite unless excuses.json accepts it, per file and per rule, with a reason.
// An excuse that matches nothing fails too (it would hide a later finding), and so does an excuse
// of an online-safety rule for a file after `frozen_through` (the files applied before the rules).
// scripts/dev test runs it with the unit tests; `node --test` in this folder runs it alone.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const DIR = path.join(ROOT, 'migrations');
const SQUAWK = path.join(HERE, 'node_modules/@squawk-cli/linux-x64/bin/squawk');
const EXCUSES = JSON.parse(readFileSync(path.join(HERE, 'excuses.json'), 'utf8'));
const NAME_RE = /^(\d{4})_[a-z0-9_]+\.sql$/;

/** Runs squawk on `files` with the project's settings; resolves to its findings (lines from 0). */
function squawk(files) {
  const args = ['--reporter', 'json', `--pg-version=${EXCUSES.squawk.pg_version}`];
  if (EXCUSES.squawk.assume_in_transaction) args.push('--assume-in-transaction');
  const everywhere = EXCUSES.everywhere.map((e) => e.rule);
  if (everywhere.length) args.push(`--exclude=${everywhere.join(',')}`);
  return new Promise((resolve, reject) => {
    execFile(SQUAWK, [...args, ...files], { maxBuffer: 16 << 20, timeout: 60_000 }, (err, stdout, stderr) => {
      // Exit status 1 means "found something"; anything else, or no JSON, is a broken run.
      if (err && err.code !== 1) return reject(new Error(`squawk failed (${err.code}): ${stderr || err.message}`));
      try {
        resolve(JSON.parse(stdout || '[]'));
      } catch {
        reject(new Error(`squawk printed no JSON: ${stdout.slice(0, 500)} ${stderr.slice(0, 500)}`));
      }
    });
  });
}

const files = readdirSync(DIR).filter((f) => f.endsWith('.sql')).sort();

describe('migrations/ under squawk', () => {
  test('the settings name only known rules, each with a reason', () => {
    for (const e of EXCUSES.everywhere) assert.ok(e.rule && e.reason?.length > 20, `everywhere: ${JSON.stringify(e)}`);
    for (const [file, list] of Object.entries(EXCUSES.files)) {
      assert.ok(files.includes(file), `excuses.json excuses ${file}, which is not in migrations/`);
      for (const e of list) assert.ok(e.rule && e.reason?.length > 20, `${file}: an excuse needs a rule and a reason`);
    }
  });

  test('every file is named NNNN_name.sql, each number once', () => {
    const seen = new Map();
    for (const f of files) {
      const m = NAME_RE.exec(f);
      assert.ok(m, `migrations/${f}: name it NNNN_lower_case_words.sql (the NNNN orders the files)`);
      assert.ok(!seen.has(m[1]), `migrations/${f} and ${seen.get(m[1])} share the number ${m[1]}`);
      seen.set(m[1], f);
    }
  });

  test('every finding is fixed or excused, every excuse is used', async () => {
    assert.ok(files.length > 0, 'migrations/ holds SQL files');
    const findings = await squawk(files.map((f) => path.join(DIR, f)));
    const used = new Set();
    const problems = [];
    for (const x of findings) {
      const file = path.basename(x.file);
      const excuse = (EXCUSES.files[file] ?? []).find((e) => e.rule === x.rule_name);
      if (excuse) {
        used.add(`${file} ${x.rule_name}`);
        continue;
      }
      problems.push(`migrations/${file}:${x.line + 1}: ${x.rule_name}: ${x.message}${x.help ? ` (${x.help})` : ''}`);
    }
    for (const [file, list] of Object.entries(EXCUSES.files)) {
      const version = Number.parseInt(file, 10);
      for (const e of list) {
        if (!used.has(`${file} ${e.rule}`)) {
          problems.push(`tests/migrations/excuses.json: ${file} excuses ${e.rule}, which squawk no longer finds there: remove the excuse`);
        }
        if (version > EXCUSES.frozen_through && EXCUSES.never_excused_after_frozen.includes(e.rule)) {
          problems.push(`tests/migrations/excuses.json: ${file} excuses ${e.rule}, which no migration after ` +
            `${String(EXCUSES.frozen_through).padStart(4, '0')} may break: change the file (docs/internals/migrations.md)`);
        }
      }
    }
    assert.deepEqual(problems, [], `\n${problems.join('\n')}\n\nFix the file following docs/internals/migrations.md. ` +
      'If the file is already applied somewhere (migrate checks its checksum), or the rule does not fit, excuse that ' +
      'rule for that file in tests/migrations/excuses.json, with the reason.');
  });

  test('the linter does catch what the rules forbid', async () => {
    // Proof that the check above can fail: a file breaking three rules, linted the same way.
    const dir = mkdtempSync(path.join(tmpdir(), 'cartshard-squawk-'));
    try {
      const bad = path.join(dir, '9999_bad.sql');
      writeFileSync(bad, [
        'ALTER TABLE carts ALTER COLUMN status TYPE varchar(32);',
        'CREATE INDEX carts_created ON carts (created_at);',
        "ALTER TABLE carts ADD CONSTRAINT carts_version_positive CHECK (version > 0);",
        '',
      ].join('\n'));
      const rules = new Set((await squawk([bad])).map((x) => x.rule_name));
      for (const r of ['changing-column-type', 'require-concurrent-index-creation', 'constraint-missing-not-valid']) {
        assert.ok(rules.has(r), `squawk reports ${r}: ${[...rules].join(', ')}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
