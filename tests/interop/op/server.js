// A certified OpenID Provider (the npm package oidc-provider) for oidc-gateway's interoperability
// tests. Started by tests/it/interop.rs as `node server.js CONFIG.json`; listens on a free
// loopback port and prints one JSON line {"issuer": "..."} once it serves.
//
// CONFIG.json (written by the test):
//   gateway       the gateway's public URL: redirect and post-logout URIs are registered under it
//   secret        client secret of the client_secret_basic and client_secret_post clients
//   jwks          public JWKS of the private_key_jwt client (from `oidc-gateway keygen --jwk`)
//   jwtAlg        the one algorithm that client's assertions may use (default RS256)
//   accessTokenTtl, idTokenTtl   seconds (short ones make the gateway refresh)
//   rotateRefreshToken           true: every refresh returns a new refresh token and a reused one
//                                revokes the grant (oidc-provider's reuse detection)
//
// Clients: gw-basic (client_secret_basic), gw-post (client_secret_post), gw-jwt (private_key_jwt,
// jwtAlg). Client assertions may be RS512, ES384, RS256, PS256 or ES256, advertised in that
// order (CIS2 registrations use RS512). All: code flow only, PKCE required, refresh tokens, RP-initiated and back-channel logout.
//
// Login: oidc-provider's own development login page (devInteractions). Its form is submitted to
// /interaction/:uid; a small middleware in front handles that submission so that the account is
// checked and the session carries CIS2's acr/amr (the stock handler accepts any login and sets
// neither). As on CIS2, a user with several roles picks one at login: the login name
// "alice/555000000012" signs alice in with that role as selected_roleid. The authentication
// level is AAL3_ANY (smartcard) unless the name ends in "#ACR": "alice#AAL2_ANY" is a weaker login. Consent is implied for these first-party clients (loadExistingGrant).
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function nrbacRole(personRoleId, orgCode, roleCode, roleName, activityCodes, workgroups) {
  return {
    person_roleid: personRoleId,
    org_code: orgCode,
    role_code: roleCode,
    role_name: roleName,
    activity_codes: activityCodes,
    workgroups,
  };
}

// NHS CIS2-shaped accounts, keyed by the login name typed on the login page.
const ACCOUNTS = {
  alice: {
    sub: '910000000001',
    name: 'Alice Example',
    given_name: 'Alice',
    family_name: 'Example',
    preferred_username: 'alice.example',
    picture: 'https://pictures.example/alice.jpg',
    email: 'alice.example@nhs.example',
    email_verified: true,
    phone_number: '+44 161 496 0000',
    phone_number_verified: true,
    address: {
      street_address: '1 Ward Road',
      locality: 'Manchester',
      region: 'Greater Manchester',
      postal_code: 'M1 1AA',
      country: 'United Kingdom',
    },
    role: {
      role_id: '555000000011',
      name: '"Clinical":"Clinical Provision":"Nurse Access Role"',
      code: 'S0080:G0450:R8000',
    },
    org: { name: 'GREATER MANCHESTER STRATEGIC HA', code: 'Q14' },
    activities: ['B0005', 'B0008'],
    workgroups: ['Ward 7 Nursing'],
    id_assurance_level: '3',
    selected_roleid: '555000000011',
    nhsid_nrbac_roles: [
      nrbacRole('555000000011', 'Q14', 'S0080:G0450:R8000',
        '"Clinical":"Clinical Provision":"Nurse Access Role"', ['B0005', 'B0008'], ['Ward 7 Nursing']),
      nrbacRole('555000000012', 'RW3', 'S8000:G8000:R8003',
        '"Admin & Clerical":"Admin and Clerical":"Medical Secretary Access Role"', ['B0264'], []),
    ],
  },
  bob: {
    sub: '910000000002',
    name: 'Bob Builder',
    given_name: 'Bob',
    family_name: 'Builder',
    email: 'bob.builder@nhs.example',
    email_verified: true,
    role: {
      role_id: '555000000021',
      name: '"Admin & Clerical":"Admin and Clerical":"Receptionist Access Role"',
      code: 'S8000:G8000:R8001',
    },
    org: { name: 'LEEDS TEACHING HOSPITALS NHS TRUST', code: 'RR8' },
    // No B0008: the Registration Authority route refuses him.
    activities: ['B0005', 'B0264'],
    workgroups: [],
    id_assurance_level: '3',
    selected_roleid: '555000000021',
    nhsid_nrbac_roles: [
      nrbacRole('555000000021', 'RR8', 'S8000:G8000:R8001',
        '"Admin & Clerical":"Admin and Clerical":"Receptionist Access Role"', ['B0005', 'B0264'], []),
    ],
  },
  jose: {
    sub: '910000000003',
    name: 'José Müller',
    given_name: 'José',
    family_name: 'Müller',
    email: 'jose.muller@nhs.example',
    email_verified: true,
    role: {
      role_id: '555000000031',
      name: '"Clinical":"Clinical Provision":"Médecin — Consultant"',
      code: 'S0080:G0450:R8000',
    },
    org: { name: 'GREATER MANCHESTER STRATEGIC HA', code: 'Q14' },
    activities: ['B0005', 'B0008', 'B0069'],
    workgroups: ['Équipe de garde'],
    id_assurance_level: '3',
    selected_roleid: '555000000031',
    nhsid_nrbac_roles: [
      nrbacRole('555000000031', 'Q14', 'S0080:G0450:R8000',
        '"Clinical":"Clinical Provision":"Médecin — Consultant"', ['B0005', 'B0008', 'B0069'],
        ['Équipe de garde']),
    ],
  },
};
// "big" has 40 roles: a session that keeps a slice of them needs several cookie chunks.
{
  const activities = Array.from({ length: 60 }, (_, i) => `B${String(i + 1).padStart(4, '0')}`);
  const roles = Array.from({ length: 40 }, (_, i) => nrbacRole(
    `5550000010${String(i + 1).padStart(2, '0')}`, `R${10 + i + 1}`, `S8000:G8000:R80${String(i + 1).padStart(2, '0')}`,
    `"Clinical":"Clinical Provision":"Role number ${i + 1}"`, activities.slice(0, Math.max(5, ((i + 1) * 3) % 60)),
    [`Workgroup ${String((i % 5) + 1).padStart(2, '0')}`],
  ));
  ACCOUNTS.big = {
    sub: '910000000004',
    name: 'Bartholomew Big-Claims',
    email: 'big.claims@nhs.example',
    role: { role_id: '555000001001', name: '"Clinical":"Clinical Provision":"Role number 1"', code: 'S8000:G8000:R8001' },
    org: { name: 'GREATER MANCHESTER STRATEGIC HA', code: 'Q14' },
    activities,
    workgroups: ['Workgroup 01'],
    id_assurance_level: '3',
    selected_roleid: '555000001001',
    nhsid_nrbac_roles: roles,
  };
}
const BY_SUB = Object.fromEntries(Object.values(ACCOUNTS).map((a) => [a.sub, a]));
// The role each user picked at their last login (sub -> person_roleid).
const SELECTED_ROLE = {};

const gateway = config.gateway.replace(/\/$/, '');
const common = {
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: [`${gateway}/oauth2/callback`],
  post_logout_redirect_uris: [`${gateway}/`, `${gateway}/bye`],
  // OpenID Connect Back-Channel Logout: when the user's session here ends, a logout token
  // naming it (sid) goes to the gateway. A gateway with cookie sessions answers 501, which
  // oidc-provider reports and otherwise ignores.
  backchannel_logout_uri: `${gateway}/oauth2/backchannel_logout`,
  backchannel_logout_session_required: true,
};
const clients = [
  {
    ...common,
    client_id: 'gw-basic',
    client_secret: config.secret,
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    ...common,
    client_id: 'gw-post',
    client_secret: config.secret,
    token_endpoint_auth_method: 'client_secret_post',
  },
  {
    ...common,
    client_id: 'gw-jwt',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: config.jwtAlg ?? 'RS256',
    jwks: config.jwks,
  },
];

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: 'op-rs256' };

const configuration = {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  pkce: { required: () => true },
  // Without a configured list oidc-provider drops the acr claim altogether.
  acrValues: ['AAL3_ANY', 'AAL2_ANY'],
  scopes: ['openid', 'profile', 'email', 'address', 'phone', 'nationalrbacaccess', 'offline_access'],
  claims: {
    // CIS2 puts acr and amr in every ID token; oidc-provider releases a claim that belongs to
    // no scope only when the client asks for it with the claims parameter.
    openid: ['sub', 'acr', 'amr'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username', 'picture',
      'role', 'org', 'activities', 'workgroups', 'id_assurance_level'],
    email: ['email', 'email_verified'],
    address: ['address'],
    phone: ['phone_number', 'phone_number_verified'],
    nationalrbacaccess: ['nhsid_nrbac_roles', 'selected_roleid'],
    sid: null,
    auth_time: null,
    iss: null,
  },
  // oidc-provider refuses to fetch special-use addresses (SSRF protection) by passing its own
  // dispatcher; the gateway of these tests is on loopback, so back-channel logout goes out
  // with the default one.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  enabledJWA: {
    clientAuthSigningAlgValues: ['RS512', 'ES384', 'RS256', 'PS256', 'ES256'],
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
  },
  ttl: {
    AccessToken: config.accessTokenTtl ?? 600,
    IdToken: config.idTokenTtl ?? 600,
    AuthorizationCode: 60,
    RefreshToken: 3600,
    Session: 3600,
    Grant: 3600,
    Interaction: 600,
  },
  // oidc-provider only issues refresh tokens for offline_access by default, which in turn needs
  // prompt=consent; a gateway asks for plain sessions, so allow them to any client registered for
  // the refresh_token grant.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => config.rotateRefreshToken === true,
  // First-party clients: consent is implied, with the scopes they asked for.
  async loadExistingGrant(ctx) {
    const { client, session } = ctx.oidc;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
    if (!grant) {
      grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    }
    grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
    await grant.save();
    return grant;
  },
  async findAccount(_ctx, sub) {
    const account = BY_SUB[sub];
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { ...account, selected_roleid: SELECTED_ROLE[sub] ?? account.selected_roleid };
      },
    };
  },
};

let provider;
const server = http.createServer((req, res) => provider.callback()(req, res));
// The port comes from the test process, which hands out every port its servers use (a port
// the kernel picked here could be one it just gave a gateway that has not bound it yet).
await new Promise((resolve) => { server.listen(config.port ?? 0, '127.0.0.1', resolve); });
const issuer = `http://127.0.0.1:${server.address().port}`;
provider = new Provider(issuer, configuration);
// Failed back-channel deliveries go to stderr (the test harness keeps it in op.log).
provider.on('backchannel.error', (ctx, err, client) => {
  process.stderr.write(`backchannel logout to ${client.clientId} failed: ${err.message}\n`);
});

// The login form's submission: check the account, record CIS2's authentication context.
provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (ctx.method !== 'POST' || !m) {
    await next();
    return;
  }
  const body = await new Promise((resolve, reject) => {
    let data = '';
    ctx.req.setEncoding('utf8');
    ctx.req.on('data', (chunk) => { data += chunk; });
    ctx.req.on('end', () => resolve(new URLSearchParams(data)));
    ctx.req.on('error', reject);
  });
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (body.get('prompt') !== 'login' || details.prompt.name !== 'login') {
    ctx.status = 400;
    ctx.body = 'unexpected interaction';
    return;
  }
  const [login, acr = 'AAL3_ANY'] = (body.get('login') ?? '').split('#');
  const [name, role] = login.split('/');
  const account = ACCOUNTS[name];
  const roles = account ? account.nhsid_nrbac_roles.map((r) => r.person_roleid) : [];
  if (!account || !body.get('password') || (role && !roles.includes(role))) {
    ctx.status = 401;
    ctx.type = 'html';
    ctx.body = '<!doctype html><title>Sign-in failed</title><p>Unknown user or empty password.</p>';
    return;
  }
  SELECTED_ROLE[account.sub] = role ?? account.selected_roleid;
  const redirectTo = await provider.interactionResult(ctx.req, ctx.res, {
    login: { accountId: account.sub, acr, amr: ['pin'] },
  }, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(redirectTo);
});

process.stdout.write(`${JSON.stringify({ issuer })}\n`);

// The test kills this process; also stop when the test's stdin closes (its process ended).
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
