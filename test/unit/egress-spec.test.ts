import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { egressRule } from '../../cli/sessions';
import { egressRules, networkPolicy, sandboxSpecProblems } from '../../common/sandbox-spec';
import type { SandboxSpec } from '../../common/types';
import { createOptions, poolOptions, proxyOptions } from '../../host';
import { loadConfig } from '../../workers/config';

const problems = (network: unknown): string[] => sandboxSpecProblems({ network } as SandboxSpec);

describe('sandbox.network', () => {
  it('accepts names, wildcards and ports, and fills the default port', () => {
    const spec: SandboxSpec = { network: { allow: [{ host: 'example.com' }, { host: '*.PyPI.org', ports: [80, 443] }] } };
    assert.deepEqual(sandboxSpecProblems(spec), []);
    assert.deepEqual(egressRules(spec), [
      { host: 'example.com', ports: [443] },
      { host: '*.pypi.org', ports: [80, 443] },
    ]);
    assert.equal(networkPolicy(spec), 'egress proxy: example.com:443 *.pypi.org:80,443');
    assert.equal(networkPolicy({}), 'none');
  });

  it('refuses what is not an allowlist, each with what is wrong', () => {
    assert.match(problems({})[0]!, /sandbox\.network\.allow must list 1 to 64 destinations/);
    assert.match(problems({ allow: [] })[0]!, /leave sandbox\.network out for no network/);
    assert.match(problems({ allow: Array(65).fill({ host: 'a.com' }) })[0]!, /1 to 64/);
    assert.match(problems({ allow: [{ host: 'http://example.com' }] })[0]!, /allow\[0\]\.host must be a host name/);
    assert.match(problems({ allow: [{ host: 'a b.com' }] })[0]!, /host name/);
    assert.match(problems({ allow: [{ host: 'example.*' }] })[0]!, /host name/);
    assert.match(problems({ allow: [{ host: '10.0.0.1' }] })[0]!, /must be a name, not an IP address/);
    assert.match(problems({ allow: [{ host: '::1' }] })[0]!, /host name/);
    assert.match(problems({ allow: [{ host: 'a.com', ports: [] }] })[0]!, /ports must list 1 to 16 port numbers/);
    assert.match(problems({ allow: [{ host: 'a.com', ports: [0] }] })[0]!, /ports/);
    assert.match(problems({ allow: [{ host: 'a.com', ports: [65536] }] })[0]!, /ports/);
    assert.match(problems({ allow: [{ host: 'a.com', ports: ['443'] }] })[0]!, /ports/);
    assert.equal(problems({ allow: [{ host: 'ok.com' }, { host: 'bad host' }, { host: 'x.com', ports: [1.5] }] }).length, 2);
  });

  it('keel run --allow-net reads host[:ports]', () => {
    assert.deepEqual(egressRule('example.com'), { host: 'example.com' });
    assert.deepEqual(egressRule('example.com:80,443'), { host: 'example.com', ports: [80, 443] });
    const bad = egressRule('example.com:http');
    assert.ok(Number.isNaN(bad.ports![0]));
    assert.match(problems({ allow: [bad] })[0]!, /ports/);
  });
});

describe('networked container options', () => {
  it('puts a networked sandbox on its own network with the proxy in its environment; others have none', () => {
    const plain = createOptions({ sessionId: 's1', hostId: 'h', image: 'img' });
    assert.equal(plain.HostConfig?.NetworkMode, 'none');
    assert.equal(plain.NetworkDisabled, true);
    assert.equal(plain.Env, undefined);
    const o = createOptions({ sessionId: 's1', hostId: 'h', image: 'img', egress: { network: 'keel-net-s1' } });
    assert.equal(o.HostConfig?.NetworkMode, 'keel-net-s1');
    assert.equal(o.NetworkDisabled, false);
    assert.deepEqual(o.Env, ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'].map((n) => `${n}=http://egress-proxy:3128`));
    // Everything else is the same lockdown.
    assert.deepEqual({ ...o.HostConfig, NetworkMode: 'none' }, plain.HostConfig);
    assert.equal(poolOptions({ token: 't', hostId: 'h', image: 'img', leaseSec: 60 }).HostConfig?.NetworkMode, 'none');
  });

  it('locks the proxy down and gives it nothing secret in Env or Cmd', () => {
    const p = proxyOptions({ name: 'keel-egress-s1', labels: {}, image: 'img', network: 'keel-egress' });
    assert.equal(p.User, '65534:65534');
    assert.deepEqual(p.HostConfig?.CapDrop, ['ALL']);
    assert.equal(p.HostConfig?.CapAdd, undefined);
    assert.equal(p.HostConfig?.ReadonlyRootfs, true);
    assert.deepEqual(p.HostConfig?.SecurityOpt, ['no-new-privileges']);
    assert.equal(p.Env, undefined);
    assert.deepEqual(p.Cmd, ['python3', '-u', '/opt/keel/egress_proxy.py']);
  });
});

describe('worker egress settings', () => {
  it('reads headers per host and pinned names', () => {
    const c = loadConfig({ KEEL_EGRESS_HEADERS: '{"api.test": {"Authorization": "Bearer x"}}', KEEL_EGRESS_RESOLVE: 'api.test=172.17.0.1, b.test=::1' });
    assert.deepEqual(c.egress, { headers: { 'api.test': { Authorization: 'Bearer x' } }, resolve: { 'api.test': '172.17.0.1', 'b.test': '::1' } });
    assert.deepEqual(loadConfig({}).egress, { headers: {}, resolve: {} });
  });

  it('refuses bad settings without ever printing a header value', () => {
    const secret = 'sk-PLANTED-4242';
    const refused = (env: Record<string, string>): string => {
      try {
        loadConfig(env);
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error(`accepted ${JSON.stringify(env)}`);
    };
    for (const value of [
      `{"api.test": {"X-Key": "${secret}\\r\\nX-Other: 1"}}`,
      `{"API.test": {"X-Key": "${secret}"}}`,
      `{"api.test": {"Bad Name": "${secret}"}}`,
      `{"api.test": "${secret}"}`,
      `not json ${secret}`,
    ]) {
      const message = refused({ KEEL_EGRESS_HEADERS: value });
      assert.match(message, /^KEEL_EGRESS_HEADERS/);
      assert.ok(!message.includes(secret), message);
    }
    assert.match(refused({ KEEL_EGRESS_RESOLVE: 'api.test=not-an-ip' }), /KEEL_EGRESS_RESOLVE must be name=address pairs/);
    assert.match(refused({ KEEL_EGRESS_RESOLVE: 'api.test' }), /KEEL_EGRESS_RESOLVE/);
    assert.match(refused({ KEEL_EGRESS_CA_FILE: '/nonexistent/ca.pem' }), /KEEL_EGRESS_CA_FILE: cannot read \/nonexistent\/ca\.pem/);
    assert.match(refused({ KEEL_EGRESS_CA_FILE: __filename }), /holds no PEM certificate/);
  });
});
