// Installs the e2e tests' npm dependencies (playwright-core, werift, ws, typescript) into
// DEST/node_modules with `npm ci`, from the package.json and package-lock.json in SRC; does
// nothing when DEST already holds exactly that lock file's install.
//   node tests/e2e/npm-setup.mjs SRC DEST
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const [src, dest] = process.argv.slice(2);
if (!src || !dest) {
  console.error('usage: npm-setup.mjs SRC DEST');
  process.exit(2);
}
mkdirSync(dest, { recursive: true });
for (const f of ['package.json', 'package-lock.json']) copyFileSync(path.join(src, f), path.join(dest, f));
const lock = readFileSync(path.join(dest, 'package-lock.json'));
const digest = createHash('sha256').update(lock).digest('hex');
const stamp = path.join(dest, 'node_modules', '.e2e-lock-sha256');
if (existsSync(stamp) && readFileSync(stamp, 'utf8') === digest) {
  console.log(`npm-setup: ${dest}/node_modules is up to date`);
  process.exit(0);
}
const npm = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dest, stdio: 'inherit' });
if (npm.status !== 0) {
  console.error(`npm-setup: npm ci failed in ${dest} (exit ${npm.status ?? npm.signal})`);
  process.exit(1);
}
writeFileSync(stamp, digest);
console.log(`npm-setup: installed into ${dest}/node_modules`);
