// A real OpenID Connect provider for Cumulo's single sign-on tests: `oidc-provider` (the
// certified Node implementation) with one static client, accounts a test can change, and the
// provider's own development login and consent forms, which the tests submit with httpx.
//
//   PORT=9000 CLIENT_ID=cumulo CLIENT_SECRET=... REDIRECT_URIS=http://127.0.0.1:8080/login/sso/callback \
//     node tests/oidc/provider.mjs
//
// The issuer is http://127.0.0.1:PORT. Accounts (the login form's "login" field is the account
// id; any password is taken) start as ACCOUNTS (JSON: {"id": {claims}}) and are changed with
// `PUT /_test/accounts/<id>` and a JSON body of claims: what the next sign-in says.
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
if (!port) throw new Error('set PORT');
const issuer = `http://127.0.0.1:${port}`;
const redirectUris = (process.env.REDIRECT_URIS || '').split(',').filter(Boolean);
const accounts = new Map(Object.entries(JSON.parse(process.env.ACCOUNTS || '{}')));

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signing = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.CLIENT_ID || 'cumulo',
    client_secret: process.env.CLIENT_SECRET || 'cumulo-test-secret',
    redirect_uris: redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signing] },
  cookies: { keys: ['cumulo-test-provider-cookies'] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  async findAccount(ctx, id) {
    if (!accounts.has(id)) return undefined;
    return {
      accountId: id,
      async claims() { return { sub: id, ...accounts.get(id) }; },
    };
  },
});
provider.on('server_error', (ctx, error) => console.error('server_error', error));

const callback = provider.callback();

async function admin(req, res) {
  const match = /^\/_test\/accounts\/([^/]+)$/.exec(req.url);
  if (!match || req.method !== 'PUT') {
    res.writeHead(404).end();
    return;
  }
  let body = '';
  for await (const chunk of req) body += chunk;
  accounts.set(decodeURIComponent(match[1]), JSON.parse(body));
  res.writeHead(204).end();
}

createServer((req, res) => {
  if (req.url.startsWith('/_test/')) {
    admin(req, res).catch((error) => res.writeHead(400).end(String(error)));
    return;
  }
  callback(req, res);
}).listen(port, '127.0.0.1', () => console.log(`oidc test provider at ${issuer}`));
