/** exports/apps/serve.ts: the static server listens on 127.0.0.1 only and refuses every path outside its mounts. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { resolveRequestPath, startStaticServer, WEB_ROOT, ortWebDist } from '../../../exports/apps/serve.ts';
import { tempDir } from '../helpers.ts';

const DIR = tempDir('serve');
const DATA = path.join(DIR, 'data');
fs.mkdirSync(DATA);
fs.writeFileSync(path.join(DATA, 'gallery.json'), '{"ok":true}');
fs.writeFileSync(path.join(DIR, 'secret.txt'), 'outside the root');
fs.symlinkSync(path.join(DIR, 'secret.txt'), path.join(DATA, 'link.txt'));

/** A raw HTTP/1.1 request (no client-side path normalisation); returns the status code and body. */
function rawGet(port: number, target: string, opts: { host?: string; method?: string } = {}): Promise<{ status: number; body: string; headers: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(`${opts.method ?? 'GET'} ${target} HTTP/1.1\r\nHost: ${opts.host ?? `127.0.0.1:${port}`}\r\nConnection: close\r\n\r\n`);
    });
    let data = '';
    socket.on('data', (d) => (data += d.toString('latin1')));
    socket.on('end', () => {
      const [head, ...rest] = data.split('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(head ?? '')?.[1] ?? 0), body: rest.join('\r\n\r\n'), headers: head ?? '' });
    });
    socket.on('error', reject);
  });
}

test('resolveRequestPath: inside the root only', () => {
  const root = '/srv/root';
  assert.is(resolveRequestPath(root, '/index.html'), '/srv/root/index.html');
  assert.is(resolveRequestPath(root, '/a/b%20c.js'), '/srv/root/a/b c.js');
  for (const bad of ['/../etc/passwd', '/a/../../x', '/%2e%2e/x', '/%2E%2E%2Fx', '/a%2f..%2f..%2fx', '//etc/passwd', '/%2fetc/passwd', '/C:/Windows/win.ini',
    '/c%3a/x', '/..\\x', '/a%5c..%5cx', '/x%00.html', '/%zz', '/./x', '/a//b', '/..']) {
    assert.is(resolveRequestPath(root, bad), null, bad);
  }
});

test('the server: 127.0.0.1 only; serves its mounts; refuses traversal, other hosts and methods', async () => {
  const server = await startStaticServer({ mounts: { '/': WEB_ROOT, '/ort/': ortWebDist(), '/data/': DATA }, port: 0 });
  try {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const ok = await rawGet(server.port, '/');
    assert.is(ok.status, 200);
    assert.match(ok.body, 'DINO teacher');
    assert.match(ok.headers.toLowerCase(), 'content-type: text/html');
    assert.is((await rawGet(server.port, '/data/gallery.json')).body, '{"ok":true}');
    const ortFile = await rawGet(server.port, '/ort/ort.webgpu.min.mjs', { method: 'HEAD' });
    assert.is(ortFile.status, 200);
    assert.match(ortFile.headers.toLowerCase(), 'text/javascript');
    assert.is((await rawGet(server.port, '/data/missing.bin')).status, 404);

    const refused = [
      '/../package.json', '/%2e%2e/package.json', '/%2E%2E%2Fpackage.json', '/ort/../../package.json', '/ort/%2e%2e/%2e%2e/package.json',
      '/data/..%2f..%2fsecret.txt', '/data/%2e%2e/secret.txt', '//etc/passwd', '/%2Fetc%2Fpasswd', `/${encodeURIComponent(path.join(DIR, 'secret.txt'))}`,
      '/data/..\\secret.txt', '/C:/Windows/win.ini', '/index.html%00.js', 'http://127.0.0.1/../secret.txt', '*', '/data/link.txt',
    ];
    for (const target of refused) {
      const r = await rawGet(server.port, target);
      assert.ok(r.status >= 400 && r.status < 500, `${target}: status ${r.status}`);
      assert.not.match(r.body, 'outside the root', target);
      assert.not.match(r.body, '"name"', target);
      assert.not.match(r.body, 'root:', target);
    }
    assert.is((await rawGet(server.port, '/', { host: 'evil.example:80' })).status, 403, 'DNS-rebinding host');
    assert.is((await rawGet(server.port, '/', { method: 'POST' })).status, 405);
  } finally {
    await server.close();
  }
});

test('a busy port is an error naming the port and the remedy', async () => {
  const a = await startStaticServer({ mounts: { '/': WEB_ROOT }, port: 0 });
  try {
    await startStaticServer({ mounts: { '/': WEB_ROOT }, port: a.port });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, `port ${a.port}`);
    assert.match((e as Error).message, '--port');
  } finally {
    await a.close();
    fs.rmSync(DIR, { recursive: true, force: true });
  }
});

test.run();
