#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from values the tests and docs use:
the NHS CIS2 and Spine claim shapes (/work/shared/seeds, crates/devprovider/src/users.rs),
the example configs (config/*.toml), the devprovider's discovery document and JWKS shape, and
the paths, queries and headers of the unit tests. Run from the repository root:
    python3 fuzz/make_seeds.py
File names are content hashes (as libFuzzer names them), so running it again changes nothing."""
import base64, glob, hashlib, json, os, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")
NOW = 1_790_000_000
ISS = "https://connect.iam.spine2.ncrs.nhs.uk/token"
CLIENT = "s6BhdRkqt3"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def b64(b):
    if isinstance(b, str):
        b = b.encode()
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def dumps(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def role(rid, org, code, name, acts, wgs):
    return {"person_roleid": rid, "org_code": org, "role_code": code, "role_name": name,
            "activity_codes": acts, "workgroups": wgs}


# --- claim shapes -------------------------------------------------------------------------
SPINE_ID = {"role": "S0080:G0450:R5080", "sub": "uid=240000109896,ou=People,o=nhs",
            "iat": 1503584477, "iss": ISS, "aud": ISS,
            "jti": "0cca2fe5675f4fe28f687ec5a2dac187", "activities": ["B0005", "B0008"],
            "exp": 1503584507}
SPINE_ID2 = {"device_id": "AMuvc7H9TlriCn1Rwjz5jWUAVvAqhymJ",
             "role": {"role_id": "240000115894",
                      "name": "\"Admin & Clerical\":\"Management - A & C\":\"Registration Authority Manager\"",
                      "code": "S0080:G0450:R5080"},
             "activities": ["B0005", "B0008"], "amr": ["pin", "legacy_signed_challenge"],
             "jti": "2b44cf3602d445e0909a808ad3194341", "name": "Seven User Mr",
             "s_hash": "LLJ6GrrF3GenakaKAyYBTg", "at_hash": "gNn8ijUTnwM34MxSFzBgYw",
             "sub": "uid=240000109896,ou=People,o=nhs",
             "org": {"name": "GREATER MANCHESTER STRATEGIC HA", "code": "Q14"},
             "iat": 1503584477, "iss": ISS, "aud": CLIENT, "exp": 1503620477,
             "c_hash": "MPZJ1jWGHrGqL-fMHAEBMQ"}
ALICE_ACTS = ["B0005", "B0008"]
ALICE = {"sub": "910000000001", "uid": "910000000001", "name": "Alice Example",
         "given_name": "Alice", "family_name": "Example", "email": "alice.example@nhs.example",
         "role": {"role_id": "555000000011",
                  "name": "\"Clinical\":\"Clinical Provision\":\"Nurse Access Role\"",
                  "code": "S0080:G0450:R8000"},
         "org": {"name": "GREATER MANCHESTER STRATEGIC HA", "code": "Q14"},
         "activities": ALICE_ACTS, "workgroups": ["Ward 7 Nursing"], "amr": ["pin"],
         "acr": "AAL3_ANY", "id_assurance_level": "3", "selected_roleid": "555000000011",
         "nhsid_nrbac_roles": [
             role("555000000011", "Q14", "S0080:G0450:R8000",
                  "\"Clinical\":\"Clinical Provision\":\"Nurse Access Role\"", ALICE_ACTS,
                  ["Ward 7 Nursing"]),
             role("555000000012", "RW3", "S8000:G8000:R8003",
                  "\"Admin & Clerical\":\"Admin and Clerical\":\"Medical Secretary Access Role\"",
                  ["B0264"], [])]}
JOSE = {"sub": "910000000003", "name": "José Müller", "given_name": "José",
        "family_name": "Müller", "email": "jose.muller@nhs.example",
        "role": {"role_id": "555000000031",
                 "name": "\"Clinical\":\"Clinical Provision\":\"Médecin — Consultant\"",
                 "code": "S0080:G0450:R8000"},
        "org": {"name": "GREATER MANCHESTER STRATEGIC HA", "code": "Q14"},
        "activities": ["B0005", "B0008", "B0069"], "workgroups": ["Équipe de garde"],
        "selected_roleid": "555000000031",
        "nhsid_nrbac_roles": [role("555000000031", "Q14", "S0080:G0450:R8000",
                                   "Médecin — Consultant", ["B0005", "B0008", "B0069"],
                                   ["Équipe de garde"])]}
SIGNICAT = {"sub": "sig-12345", "preferred_username": "kari.nordmann", "name": "Kari Nordmann",
            "picture": "https://example.com/p.png", "email_verified": True, "idp": "nbid",
            "address": {"street_address": "Storgata 1\r\n0155 Oslo", "country": "NO"}}
HOSTILE = {"sub": "a\r\nX-Evil: 1", "name": "nul\u0000del\u007ftab\t", "n": 1.5e300,
           "neg": -0, "big": 18446744073709551615, "i": -9223372036854775808,
           "deep": [[[["x"]]]], "org": {"code": "Q14\n"}, "empty": {}, "nothing": None,
           "$.org": "literal dollar key", "role": ["S0080", {"code": "\u2028"}]}
ALL_CLAIMS = [SPINE_ID, SPINE_ID2, ALICE, JOSE, SIGNICAT, HOSTILE]

PATHS = ["sub", "name", "role.code", "role", "org.code", "activities", "acr", "amr",
         "$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].org_code",
         "$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].role_code",
         "$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].activity_codes",
         "$.nhsid_nrbac_roles[*].org_code", "$..code", "$.role", "$['org']['code']",
         "$.activities[0]", "$.activities[-1:]", "$[?length(@) > 2]", "$..*", "address.country",
         "$.nhsid_nrbac_roles[?match(@.role_code, 'S0080.*')].person_roleid", "$.deep[0][0][0]"]

# --- claims_headers -----------------------------------------------------------------------
for c in ALL_CLAIMS:
    put("claims_headers", "\n".join(PATHS[:11]) + "\n\n" + dumps(c))
    put("claims_headers", "\n".join(PATHS[11:]) + "\n\n" + dumps(c))
put("claims_headers", "$..*\n$..[*]\n\n" + dumps(["x", {"a": [1, 2, {"b": None}]}]))

# --- session_cookie -----------------------------------------------------------------------
def session(claims, **extra):
    s = {"p": "cis2", "c": claims, "i": NOW - 100, "l": NOW - 50, "x": NOW + 8 * 3600}
    s.update(extra)
    return s

put("session_cookie", "sealed:" + dumps(session({"sub": ALICE["sub"], "org": ALICE["org"]})))
put("session_cookie", "sealed:" + dumps(session(ALICE, t=NOW + 3600, r="refresh-token-value",
                                                h="eyJhbGciOiJSUzI1NiJ9.e30.sig", s="sid-1")))
put("session_cookie", "sealed:" + dumps(session(SPINE_ID2, t=NOW)))
put("session_cookie", "sealed:" + dumps(session(HOSTILE, x=18446744073709551615)))
put("session_cookie", "sealed:" + dumps(["cis2", {"sub": "seq"}, 1, 2, 3, None, None, None, None]))
put("session_cookie", "sealed:" + dumps(session({"sub": "x", "filler": "ab" * 4000})))
put("session_cookie", "sealed:" + dumps(session(JOSE, p="dev")))
put("session_cookie", "sealed:{\"p\":\"cis2\",\"c\":{\"sub\":\"x\",\"f\":0.30000000000000004,\"e\":1e-300},\"i\":1,\"l\":1,\"x\":2}")
fake = b64(bytes([1, 0x5f]) + bytes(12) + b"ciphertext-and-tag-xxxxxxxxxxxx")
put("session_cookie", f"app=1; oidc_session={fake}")
put("session_cookie", f"oidc_session_1={fake[20:]}; oidc_session_0={fake[:20]}; theme=dark")
put("session_cookie", "; ".join(f"oidc_session_{i}=x" for i in range(6)))
put("session_cookie", f"oidc_session_login_abc=v; oidc_sessionx=2; oidc_session_7x=3\noidc_session={fake}")
put("session_cookie", f"oidc_session=\"{fake}\"; oidc_session_000=a; oidc_session_0001=b")
put("session_cookie", "oidc_session=!!!; oidc_session=; =oidc_session; oidc_session")

# --- login_state --------------------------------------------------------------------------
state = "Zm9vYmFyLXN0YXRlLXZhbHVlLWZyb20tdGhlLXByb3ZpZGVy"
ls = {"s": state, "n": "nonce-value", "v": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
      "r": "/app?x=1", "p": "cis2", "c": (NOW - 10) * 1000}
put("login_state", f"{state}\n{NOW * 1000}\napp=1\n{dumps(ls)}")
put("login_state", f"{state}\n{NOW * 1000}\noidc_session_login_AAAAAAAAAAAAAAAA=x; oidc_session_login_BBBBBBBBBBBBBBBB=y; oidc_session_login_CCCCCCCCCCCCCCCC=z\n{dumps(ls)}")
put("login_state", f"other-state\n{NOW * 1000}\n\n{dumps(ls)}")
put("login_state", f"{state}\n{(NOW + 601) * 1000}\n\n{dumps(ls)}")
put("login_state", f"{state}\n18446744073709551615\n\n{dumps(dict(ls, c=18446744073709551615))}")
put("login_state", f"{state}\n{NOW * 1000}\n\nraw:{fake}")
put("login_state", f"\n0\n\n{dumps(dict(ls, s=''))}")

# --- canonical_path -----------------------------------------------------------------------
paths = ["/", "/a/b", "/a/./b", "/a/../b", "/../../etc/passwd", "/public/../admin",
         "/public/%2e%2e/admin", "/public/%2E%2E/admin", "/public/.%2e/admin", "//a///b/",
         "/a/b/..", "/a/.", "/%72a/", "/%7Eu%5fx%2D", "/a%20b", "/caf%c3%a9", "/100%25",
         "/admin;jsessionid=1/x", "/ra;x/", "/a;p=%7e1;q/b", "/a;x/../b", "/public/..;/ra/",
         "/public/.;x/ra", "/;x/ra", "/a/..;", "/.;", "/a%2Fb", "/a%5cb", "/ra%3Bx/",
         "/a\\b", "/a%00", "/a%0d%0a", "/a%7f", "/a%", "/a%2", "/a%zz", "/a%%41", "a", "",
         "*", "/RA;JSESSIONID=A/X", "/ra./x", "/ra%20/x", "/ra::$DATA", "/ra%3A%3A$DATA",
         "/caf\u00e9", "/SECRE~1/x", "/secre%7E1", "/secret//../x", "/a/.//..", "//..",
         "/a//%2e%2e/b", "/@admin/caf\u00e9", "/%40admin/caf%c3%a9", "/app;jsessionid=1/x/y",
         "/api/v1/users", "/API/v1", "/api;x=1/v1", "/oauth2/callback", "/oauth2/auth;x",
         "/@team/caf%C3%A9/x", "/%40team/caf\u00e9", "/ra/../RA/./x"]
hosts = ["", "apps.example.org", "Admin.Example.org:8443", "admin.example.org.", "[::1]:80",
         "admin.example.org..", "a b", "user@admin.example.org", "[::1", "admin.example.org:x"]
for i, p in enumerate(paths):
    put("canonical_path", f"{hosts[i % len(hosts)]}\n{p}")
put("canonical_path", "/admin/x")

# --- config_toml --------------------------------------------------------------------------
for f in sorted(glob.glob(os.path.join(ROOT, "config", "*.toml"))):
    with open(f, "rb") as fh:
        put("config_toml", fh.read())
lib = open(os.path.join(ROOT, "fuzz", "src", "lib.rs"), encoding="utf-8").read()
cfg = lib.split('pub const CONFIG: &str = r#"', 1)[1].split('"#;', 1)[0]
put("config_toml", cfg)
put("config_toml", """
[server]
listen = "127.0.0.1:8080"
public_url = "https://apps.example.org"

[session]
keys = ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]

[providers.cis2]
issuer = "https://connect.example.org/token"
client_id = "client"
client_secret = "secret"

[[route]]
path = "/"
upstream = "http://127.0.0.1:3000"
""")
put("config_toml", """
[server]
public_url = "https://apps.example.org"
tls_cert_file = "ca.pem"
tls_key_file = "es256.pem"
assertion_key_file = "es256.pem"
assertion_key_alg = "ES256"
upstream_ca_file = "ca.pem"
case_insensitive_paths = true

[session]
keys_file = "cookie-key"
store = "redis"
[session.redis]
mode = "sentinel"
nodes = ["redis://127.0.0.1:26379"]
master_name = "mymaster"

[providers.cis2]
issuer = "https://connect.example.org/token"
client_id = "client"
client_auth = "private_key_jwt"
private_key_file = "rs256.pem"
private_key_alg = "RS256"

[[route]]
path = "/RA"
host = "Apps.Example.org"
upstream = "https://127.0.0.1:3443"
ca_file = "ca.pem"
assertion = true
bearer = true
[route.headers]
X-Auth-Org = "$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].org_code"
""")

# --- jwt ----------------------------------------------------------------------------------
idt = {"iss": ISS, "aud": CLIENT, "sub": "uid=240000109896,ou=People,o=nhs", "iat": NOW - 10,
       "exp": 4102444800, "nonce": "fuzz-nonce", "auth_time": NOW - 20, "acr": "AAL3_ANY",
       "amr": ["pin"], "sid": "sid-1"}
put("jwt", "sign:" + dumps(dict(SPINE_ID2, **idt)))
put("jwt", "sign:" + dumps(dict(ALICE, **idt)))
put("jwt", "sign:" + dumps(dict(idt, aud=[CLIENT, "other"], azp=CLIENT)))
put("jwt", "sign:" + dumps(dict(idt, aud=[CLIENT, "other"])))
put("jwt", "sign:" + dumps(dict(idt, nbf=NOW + 3600)))
put("jwt", "sign:" + dumps(dict(idt, at_hash="gNn8ijUTnwM34MxSFzBgYw")))
put("jwt", "sign:" + dumps(dict(idt, sub="")))
put("jwt", "sign:{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\",\"iat\":%d,\"exp\":4102444800,\"nonce\":\"fuzz-nonce\",\"sub\":\"b\",\"nonce\":\"other\"}" % (ISS, CLIENT, NOW))
bearer = {"iss": ISS, "aud": "https://api.example.org", "sub": "svc-client", "exp": 4102444800,
          "iat": NOW, "scope": "read write", "client_id": "svc"}
put("jwt", "sign:" + dumps(bearer))
put("jwt", "sign:" + dumps(dict(bearer, aud=["https://api.example.org", "x"], nbf=NOW)))
logout = {"iss": ISS, "aud": CLIENT, "iat": NOW - 5, "jti": "2617f03c0b44454b93b427c5d77e704d",
          "sub": "uid=240000109896,ou=People,o=nhs", "sid": "sid-1",
          "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}
put("jwt", "sign:" + dumps(logout))
put("jwt", "sign:" + dumps(dict(logout, nonce="n")))
put("jwt", "sign:" + dumps({k: v for k, v in logout.items() if k != "sub"}))
put("jwt", "sign:" + dumps(dict(logout, exp=NOW - 1000)))
put("jwt", "header:{\"alg\":\"ES256\",\"typ\":\"logout+jwt\"}\n" + dumps(logout))
put("jwt", "header:{\"alg\":\"HS256\"}\n" + dumps(logout))
put("jwt", "header:{\"alg\":\"ES256\",\"kid\":\"unknown\",\"crit\":[\"b64\"],\"b64\":false}\n" + dumps(bearer))
for claims in (SPINE_ID, SPINE_ID2, logout, bearer):
    put("jwt", b64(dumps({"alg": "RS256", "kid": "rF-Do8xhajL-bfrC0Ef0DpqvwbJ9UUzUbEFQwl42rw4"}))
        + "." + b64(dumps(claims)) + "." + b64(bytes(256)))
put("jwt", b64('{"alg":"none","typ":"JWT"}') + "." + b64(dumps(logout)) + ".")
put("jwt", b64('{"alg":"HS256"}') + "." + b64(dumps(bearer)) + "." + b64(bytes(32)))
put("jwt", "eyJhbGciOiJFUzI1NiJ9.e30=.AAAA")
put("jwt", "a.b.c.d.e")

# --- discovery_jwks -----------------------------------------------------------------------
spine_disc = {"token_endpoint": "https://connect.iam.spine2.ncrs.nhs.uk:4444/token",
              "scopes_supported": ["openid"], "id_token_signing_alg_values_supported": ["RS256"],
              "subject_types_supported": ["public"],
              "token_endpoint_auth_methods_supported": ["private_key_jwt"],
              "grant_types_supported": ["authorization_code"],
              "response_types_supported": ["code"], "issuer": ISS,
              "authorization_endpoint": "https://connect.iam.spine2.ncrs.nhs.uk:4443/authorize",
              "claims_supported": ["sub", "iss", "name", "org", "role", "workgroups", "activities"],
              "request_uri_parameter_supported": False,
              "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
              "jwks_uri": "https://connect.iam.spine2.ncrs.nhs.uk:4443/.well-known/jwks.json"}
put("discovery_jwks", dumps(spine_disc))
put("discovery_jwks", dumps(dict(spine_disc, id_token_signing_alg_values_supported=["none", "HS256"])))
put("discovery_jwks", dumps(dict(spine_disc, token_endpoint="http://connect.example.org/token")))
dev = "http://127.0.0.1:9000"
dev_disc = {"issuer": dev, "authorization_endpoint": dev + "/authorize",
            "token_endpoint": dev + "/token", "userinfo_endpoint": dev + "/userinfo",
            "jwks_uri": dev + "/jwks", "end_session_endpoint": dev + "/end_session",
            "response_types_supported": ["code"], "response_modes_supported": ["query"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "PS256"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": ["iss", "sub", "aud", "iat", "exp", "auth_time", "nonce", "at_hash", "sid", "org", "role"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "request_parameter_supported": False, "request_uri_parameter_supported": False}
put("discovery_jwks", dumps(dev_disc))
put("discovery_jwks", dumps(dict(dev_disc, end_session_endpoint="javascript:alert(1)", issuer=dev + "/")))
put("discovery_jwks", dumps(dict(dev_disc, userinfo_endpoint="http://[::1]:9000/u", id_token_signing_alg_values_supported=["ES256", "PS256", "EdDSA"])))
spine_jwks = {"keys": [{"kid": "rF-Do8xhajL-bfrC0Ef0DpqvwbJ9UUzUbEFQwl42rw4", "e": "AQAB",
                        "kty": "RSA", "n": "vsqnkkTNOlMC9boScmBCFXQ2BpQwdOGd3ET55PY4wBzZ217opPqiP43_yZBgWfG3Mb1r3PaDNCtAZSbsWH_iIvLZnllnvzYY_iOW7zrqaWSD4Dfaaa2Eg4dOBI71n4A38FRsa2N1nbWKCdX_ffZwqxZwX0dg44ELvwO5rTwJLoIZPXy2FD_lkjrR8ksC_N9EiQ-yY9bbQTIgVZuHXdklZnTTCeUczz7bAt3DVJ5JFOT1E7sBkUqOqwXLG7k-capqWYJXUNgKFig0dt8AEPPvAhXsnt4fKOQQx2Kby-YNYijpxP752P62ArGLaqcvv5hU13V2obPMQ4P9ysHBFyEurw"}]}
put("discovery_jwks", dumps(spine_jwks))
oct_key = {"kty": "oct", "kid": "hmac", "alg": "HS256", "k": b64("secret")}
put("discovery_jwks", dumps({"keys": spine_jwks["keys"] + [oct_key]}))
put("discovery_jwks", dumps({"keys": [oct_key]}))
put("discovery_jwks", dumps({"keys": [{"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "ec1",
                                        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                                        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
                                       {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
                                       {"kty": "RSA", "kid": "bad", "n": "AA", "e": "AQAB", "use": "enc"}]}))


def fixture_jwks():
    """The public keys of fuzz/fixtures/*.pem, as the targets' JWKS holds them."""
    import subprocess
    fx = os.path.join(ROOT, "fuzz", "fixtures")
    der = subprocess.run(["openssl", "pkey", "-in", os.path.join(fx, "es256.pem"), "-pubout",
                          "-outform", "DER"], capture_output=True, check=True).stdout
    point = der[-64:]
    ec = {"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "x": b64(point[:32]),
          "y": b64(point[32:])}
    mod = subprocess.run(["openssl", "rsa", "-in", os.path.join(fx, "rs256.pem"), "-noout",
                          "-modulus"], capture_output=True, check=True).stdout
    n = bytes.fromhex(mod.decode().strip().split("=", 1)[1])
    rsa = {"kty": "RSA", "alg": "RS256", "use": "sig", "e": "AQAB", "n": b64(n)}
    for k, names in ((ec, ("crv", "kty", "x", "y")), (rsa, ("e", "kty", "n"))):
        canon = "{" + ",".join(f'"{m}":"{k[m]}"' for m in names) + "}"
        k["kid"] = b64(hashlib.sha256(canon.encode()).digest())
    return {"keys": [ec, rsa]}


FIX = fixture_jwks()
put("discovery_jwks", dumps(FIX))
put("discovery_jwks", dumps({"keys": FIX["keys"] + [oct_key]}))
put("discovery_jwks", dumps({"keys": [dict(FIX["keys"][0], kid=None)]}))

# --- callback_query -----------------------------------------------------------------------
qs = ["state=Zm9vYmFy&code=SplxlOBeZQQYbYS6WxSbIA&iss=https%3A%2F%2Fconnect.iam.spine2.ncrs.nhs.uk%2Ftoken",
      "code=abc&state=s&state=t", "error=access_denied&error_description=User+cancelled&state=s",
      "error=%3Cscript%3E&state=s", "rd=%2Fapp%3Fx%3D1%26y%3D2", "rd=/a/b%23frag", "rd=//evil.example",
      "rd=/%5Cevil.example", "rd=https://evil.example", "rd=/%252F%252Fevil", "rd=/%0d%0aLocation:+https://evil",
      "rd=/caf%C3%A9", "rd=/\\evil", "rd=%2F%09%2Fevil.example", "rd=/@evil.example", "rd=/.%2e/admin",
      "rd=/%2e%2e%2f%2fevil", "rd=/a&rd=//evil", "state&code&iss", "iss=x&iss=y", "=&&=&%", "rd=%2F%E2%80%A8x",
      "rd=/%2525252F%2F"]
for q in qs:
    put("callback_query", q)

# --- forwarded_headers --------------------------------------------------------------------
put("forwarded_headers", "203.0.113.9\nHost: apps.example.org\nX-Forwarded-For: 1.2.3.4\nX-Forwarded-Host: evil.example\nForwarded: for=1.2.3.4;host=evil\nX_Forwarded_Proto: https\nX-Original-URL: /admin\nX-Auth-Sub: admin\nX_Auth_Org: Q14\nX-User: root\nCookie: theme=dark; oidc_session=abc; oidc_session_0=x\nCookie: oidc_session_login_abc=v; app=1\n< Set-Cookie: oidc_session=planted; Path=/\n< Set-Cookie: app=1\n< Cache-Control: public, max-age=600, s-maxage=60")
put("forwarded_headers", "10.1.2.3\nHost: admin.example.org\nX-Forwarded-For: 198.51.100.7\nX-Real-IP: 198.51.100.7\nCookie: oidc_session = abc ; app=2\n< Set-Cookie:  oidc_session_0=x\n< Cache-Control: no-store")
put("forwarded_headers", "2001:db8::1\nHost: [::1]:8080\nTrue-Client-IP: 1.1.1.1\nCF-Connecting-IP: 1.1.1.1\nCookie: oidc_sessionx=keep; oidc_session_=drop\n< Set-Cookie: oidc_session\n< Set-Cookie: app=1; oidc_session=2")
put("forwarded_headers", "\nHost: apps.example.org\nFront-End-Https: on\nX-Forwarded-Ssl: on\nCookie: \u00a0oidc_session=x; oidc_session\t=y\n< Cache-Control: Private")
put("forwarded_headers", "192.0.2.10\nX-Forwarded-For: a, b\nx-auth-anything: 1\n< Set-Cookie: OIDC_SESSION=x")

print("seeds written to", OUT)
