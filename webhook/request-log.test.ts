import { describe, expect, it } from 'vitest';
import { generateToken } from '../credentials/token.js';
import { logPath } from './request-log.js';

describe('logPath', () => {
  it('keeps the path of a request target or a whole URL, without query string or fragment', () => {
    expect(logPath('/api/items')).toBe('/api/items');
    expect(logPath('/api/items?page=2&sig=abc')).toBe('/api/items');
    expect(logPath('/docs#section?x')).toBe('/docs');
    expect(logPath('https://app.example:8443/api/v1/things?x=1')).toBe('/api/v1/things');
    expect(logPath('http://app.example')).toBe('/');
  });

  it('replaces anything shaped like a token, whatever its prefix, and keeps the rest', () => {
    const token = generateToken().token;
    const other = generateToken({ prefix: 'acme' }).token;
    expect(logPath(`/download/${token}/file`)).toBe('/download/[redacted]/file');
    expect(logPath(`/a/${token}${other}`)).not.toContain(token.slice(3));
    expect(logPath(`/k/${other}`)).toBe('/k/[redacted]');
    expect(logPath('/snake_case/paths_stay')).toBe('/snake_case/paths_stay');
  });

  it('drops control characters and cuts at the column bound', () => {
    expect(logPath('/a\u0000b\r\nc\u007f')).toBe('/abc');
    expect(logPath(`/${'x'.repeat(5000)}`)).toHaveLength(2048);
  });
});
