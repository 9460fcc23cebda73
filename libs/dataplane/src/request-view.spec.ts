import { describe, expect, it } from 'vitest';
import { cookieValue, hashKeyValue, headerValue, parseQuery, queryParam, type RequestView } from './request-view';

const req = (over: Partial<RequestView> = {}): RequestView => ({ method: 'GET', path: '/', query: '', headers: {}, ...over });

describe('request view helpers', () => {
  it('joins repeated headers with ", "', () => {
    expect(headerValue({ 'x-a': ['1', '2'] }, 'x-a')).toBe('1, 2');
    expect(headerValue({ 'x-a': 'v' }, 'x-a')).toBe('v');
    expect(headerValue({}, 'x-a')).toBeUndefined();
  });

  it('parses a raw query, decoding escapes and "+", first value winning', () => {
    const q = parseQuery('name=J%C3%BCrgen+M&tag=a&tag=b&flag&bad=%E0%A4%A&empty=&&x%20y=1');
    expect(q.get('name')).toBe('Jürgen M');
    expect(q.get('tag')).toBe('a');
    expect(q.get('flag')).toBe('');
    expect(q.get('bad')).toBe('%E0%A4%A'); // malformed escape kept as sent
    expect(q.get('empty')).toBe('');
    expect(q.get('x y')).toBe('1');
    expect(parseQuery('').size).toBe(0);
  });

  it('finds one query parameter without parsing the rest', () => {
    expect(queryParam('a=1&session=abc%2Fdef&b=2', 'session')).toBe('abc/def');
    expect(queryParam('a=1', 'session')).toBeUndefined();
  });

  it('reads cookies by exact name, unquoting values', () => {
    const header = 'theme=dark; session="s-123"; sessionx=no;  lang=en';
    expect(cookieValue(header, 'session')).toBe('s-123');
    expect(cookieValue(header, 'lang')).toBe('en');
    expect(cookieValue(header, 'sess')).toBeUndefined();
    expect(cookieValue(undefined, 'session')).toBeUndefined();
  });

  it('reads each kind of hash key, undefined when the request lacks it', () => {
    const r = req({ headers: { 'x-user': 'u1', cookie: 'sid=c1' }, query: 'tenant=t1', sourceIp: '10.1.2.3' });
    expect(hashKeyValue({ header: 'X-User' }, r)).toBe('u1');
    expect(hashKeyValue({ cookie: 'sid' }, r)).toBe('c1');
    expect(hashKeyValue({ queryParameter: 'tenant' }, r)).toBe('t1');
    expect(hashKeyValue({ sourceIp: true }, r)).toBe('10.1.2.3');
    expect(hashKeyValue({ header: 'x-other' }, r)).toBeUndefined();
    expect(hashKeyValue({ cookie: 'sid' }, req())).toBeUndefined();
    expect(hashKeyValue({ queryParameter: 'tenant' }, req())).toBeUndefined();
  });
});
