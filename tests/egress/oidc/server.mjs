// A real OpenID Provider (node-oidc-provider) for the egress tests: one client that authenticates with
// private_key_jwt and may use the client_credentials grant; JWT access tokens for one resource (the external API).
// Usage: node server.mjs PORT CONFIG.json   (CONFIG: {client_id, jwks, resource, scope, ttl})
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const [port, configPath] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const signing = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: config.client_id,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    id_token_signed_response_alg: 'ES256',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    jwks: config.jwks,
    scope: config.scope,
  }],
  clientAuthMethods: ['private_key_jwt'],
  scopes: [config.scope],
  jwks: { keys: [{ ...signing, kid: 'op-key', alg: 'ES256', use: 'sig' }] },
  enabledJWA: { clientAuthSigningAlgValues: ['ES256'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: config.scope,
        audience: config.resource,
        accessTokenTTL: config.ttl,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.on('grant.error', (ctx, err) => console.error('grant.error', err.name, err.error_description));
provider.listen(Number(port), '127.0.0.1');
console.log(`listening ${port}`);
