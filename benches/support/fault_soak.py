#!/usr/bin/env python3
"""Driver of benches/fault_soak.sh (python3 standard library only).

Starts the upstream (nginx), the two development providers, Redis and the two gateway
instances from the commands in ENV.json (written by fault_soak.sh), logs in the session pools,
runs the mixed load in threads while the main thread injects the faults and reloads, samples
RSS and file descriptors, then checks and prints the markdown report. Exit status: 0 all
checks passed, 1 some check failed, 2 the environment could not be set up.
"""

import collections
import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

ENV = json.load(open(sys.argv[1]))
TMP = ENV["tmp"]
HOST = ENV["public_host"]
MINUTES = ENV["minutes"]
SEED = ENV["seed"] or str(random.randrange(1 << 30))
RNG = random.Random(SEED)
GRACE = 5.0  # seconds a fault window lasts after both gateways report healthy again
RELOAD_GRACE = 3.0
HTTP_TIMEOUT = 15.0

T0 = time.time()  # moved to the start of the load once set up (times in the report)


def now():
    return time.time()


def rel(t):
    return t - T0


def log(msg):
    print("   [%6.1fs] %s" % (rel(now()), msg), file=sys.stderr, flush=True)


class SetupError(Exception):
    pass


# --- processes ----------------------------------------------------------------------------------

class Proc:
    """A child process this run started; its pid is kept in TMP/pids/NAME for the script's trap."""

    def __init__(self, name, argv, logfile):
        self.name, self.argv, self.logfile = name, argv, logfile
        self.p = None

    def start(self):
        out = open(self.logfile, "ab")
        self.p = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        with open(os.path.join(TMP, "pids", self.name), "w") as f:
            f.write(str(self.p.pid))
        return self

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, wait=10.0):
        if not self.alive():
            return
        try:
            self.p.send_signal(sig)
            self.p.wait(wait)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)


def port_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def simple_get(port, path, host=None, timeout=3.0):
    """(status, body) or (None, error) with a fresh connection."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path, headers={"Host": host or "127.0.0.1:%d" % port,
                                         "Accept": "application/json"})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)


def redis_ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def wait_for(what, cond, timeout):
    end = now() + timeout
    while now() < end:
        if cond():
            return True
        time.sleep(0.2)
    raise SetupError("%s not ready after %.0f s" % (what, timeout))


upstream = Proc("upstream", ENV["upstream"]["argv"], ENV["upstream"]["log"])
providers = [Proc("provider-" + p["name"], p["argv"], p["log"]) for p in ENV["providers"]]
redis = Proc("redis", ENV["redis"]["argv"], ENV["redis"]["log"])
gateways = [Proc(g["name"], ENV["gateway_argv"] + [g["config"]], g["log"]) for g in ENV["gateways"]]
GW = ENV["gateways"]
GW_PORTS = [g["port"] for g in GW]


def upstream_ready():
    return simple_get(ENV["upstream"]["port"], "/")[0] == 200


def provider_ready(i):
    return simple_get(ENV["providers"][i]["port"], "/.well-known/openid-configuration")[0] == 200


def redis_ready():
    return redis_ping(ENV["redis"]["port"])


METRIC_RE = re.compile(r'^(oidc_gateway_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$')


def metrics(i):
    st, body = simple_get(GW[i]["admin"], "/metrics")
    out = {}
    if st != 200:
        return out
    for line in body.decode("utf-8", "replace").splitlines():
        m = METRIC_RE.match(line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def gateway_healthy(i):
    """/readyz 200, every provider up, the store up, and a public request through it."""
    if simple_get(GW[i]["admin"], "/readyz")[0] != 200:
        return False
    m = metrics(i)
    ups = [v for (k, lab), v in m.items() if k == "oidc_gateway_provider_up"]
    store = m.get(("oidc_gateway_session_store_up", ""))
    if len(ups) < 2 or min(ups) < 1 or store != 1:
        return False
    return simple_get(GW[i]["port"], "/public/health", host=HOST)[0] == 200


def all_healthy():
    return all(gateway_healthy(i) for i in range(len(GW)))


# --- recording -----------------------------------------------------------------------------------

LOCK = threading.Lock()
RECORDS = []        # dicts: t0 t1 kind gw status ok detail retry_after body
WINDOWS = []        # fault windows: kind start back healthy end down
RELOADS = []        # {start, end}
LOSSES = []         # (t, what, detail)
EXPECTED_ENDS = []  # refresh sessions ended because their provider restarted (expected)
PROVIDER_RESTARTS = []  # times a provider came back (its grants are gone)
SURVIVE = []        # per Redis restart: (fault no, probed, survived, failures)
FAILURES = collections.defaultdict(list)  # check -> details
STOP = threading.Event()


def record(kind, gw, t0, t1, status, ok, detail="", resp=None):
    r = {"t0": t0, "t1": t1, "kind": kind, "gw": gw, "status": status, "ok": ok,
         "detail": detail, "retry_after": None, "body": ""}
    if resp is not None:
        r["retry_after"] = resp.header("retry-after")
        if status is not None and status >= 500:
            r["body"] = resp.body[:300].decode("utf-8", "replace")
            r["ctype"] = resp.header("content-type") or ""
    with LOCK:
        RECORDS.append(r)
    return r


class Resp:
    def __init__(self, r, body, t0, t1):
        self.status, self.body, self.t0, self.t1 = r.status, body, t0, t1
        self.headers = r.headers

    def header(self, name):
        return self.headers.get(name)

    def set_cookies(self):
        return self.headers.get_all("set-cookie") or []


class ConnError(Exception):
    def __init__(self, msg, t0, t1):
        super().__init__(msg)
        self.t0, self.t1 = t0, t1


class Client:
    """Keep-alive connections per (host, port), one thread's; a reused connection that turns out
    closed by the server is retried once on a new one, as browsers do for idempotent requests."""

    def __init__(self):
        self.conns = {}

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns = {}

    def get(self, port, path, headers, host=HOST, addr="127.0.0.1", method="GET"):
        h = {"Host": host}
        h.update(headers)
        t0 = now()
        for attempt in (0, 1):
            key = (addr, port)
            fresh = key not in self.conns
            if fresh:
                self.conns[key] = http.client.HTTPConnection(addr, port, timeout=HTTP_TIMEOUT)
            c = self.conns[key]
            try:
                c.request(method, path, headers=h)
                r = c.getresponse()
                body = r.read()
                if r.will_close:
                    c.close()
                    del self.conns[key]
                return Resp(r, body, t0, now())
            except (OSError, http.client.HTTPException) as e:
                c.close()
                del self.conns[key]
                retryable = isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError,
                                           ConnectionResetError, http.client.BadStatusLine))
                if fresh or not retryable or attempt == 1:
                    raise ConnError("%s: %s" % (type(e).__name__, e), t0, now())
        raise AssertionError("unreachable")


class Jar:
    """A browser's cookies for the gateway's origin."""

    def __init__(self):
        self.c = {}
        self.lock = threading.Lock()

    def update(self, resp):
        with self.lock:
            for sc in resp.set_cookies():
                first, _, attrs = sc.partition(";")
                name, _, value = first.strip().partition("=")
                a = attrs.lower()
                if not value or "max-age=0" in a or "expires=thu, 01 jan 1970" in a:
                    self.c.pop(name, None)
                else:
                    self.c[name] = value

    def header(self, only_session=False):
        with self.lock:
            return "; ".join("%s=%s" % kv for kv in self.c.items()
                             if not (only_session and "_login_" in kv[0]))

    def has_session(self):
        with self.lock:
            return any(k.startswith("oidc_session") and "_login_" not in k for k in self.c)

    def copy(self):
        j = Jar()
        with self.lock:
            j.c = dict(self.c)
        return j


class Session:
    n = 0

    def __init__(self, jar, provider, route):
        Session.n += 1
        self.id, self.jar, self.provider, self.route = Session.n, jar, provider, route
        self.login_time = now()
        self.lost = False
        self.last = None


API = {"Accept": "application/json"}
NAV = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate"}


def login(client, route, provider, start_gw, cb_gw, user="alice"):
    """Full code flow; a Session, or None (each step recorded)."""
    jar = Jar()
    try:
        r = client.get(GW_PORTS[start_gw], route + "/login-%d" % RNG.randrange(1000), NAV)
    except ConnError as e:
        record("login-start", start_gw, e.t0, e.t1, None, False, str(e))
        return None
    loc = r.header("location") or ""
    ok = r.status == 302 and "/authorize" in loc
    record("login-start", start_gw, r.t0, r.t1, r.status, ok, "" if ok else loc[:80], r)
    if not ok:
        return None
    jar.update(r)
    u = urllib.parse.urlsplit(loc)
    try:
        r = client.get(u.port, "%s?%s&login_hint=%s" % (u.path, u.query, user), {},
                       host=u.netloc, addr=u.hostname)
    except ConnError as e:
        record("provider-authorize", None, e.t0, e.t1, None, False, str(e))
        return None
    cb = r.header("location") or ""
    ok = r.status == 302 and "/oauth2/callback" in cb
    record("provider-authorize", None, r.t0, r.t1, r.status, ok, "", r)
    if not ok:
        return None
    c = urllib.parse.urlsplit(cb)
    try:
        r = client.get(GW_PORTS[cb_gw], "%s?%s" % (c.path, c.query), dict(NAV, Cookie=jar.header()))
    except ConnError as e:
        record("login-callback", cb_gw, e.t0, e.t1, None, False, str(e))
        return None
    jar.update(r)
    ok = r.status == 302 and jar.has_session()
    record("login-callback", cb_gw, r.t0, r.t1, r.status, ok, "", r)
    if not ok:
        return None
    s = Session(jar, provider, route)
    return s


def use(client, kind, s, gw, path=None):
    """One authenticated API request with session s; returns the status (None: no answer)."""
    try:
        r = client.get(GW_PORTS[gw], path or (s.route + "/page"), dict(API, Cookie=s.jar.header(True)))
    except ConnError as e:
        record(kind, gw, e.t0, e.t1, None, False, str(e))
        return None
    s.jar.update(r)
    s.last = record(kind, gw, r.t0, r.t1, r.status, r.status == 200, "session %d" % s.id, r)
    return r.status


def provider_restarted_since(t):
    with LOCK:
        return any(p > t for p in PROVIDER_RESTARTS)


def in_fault(t0, t1):
    with LOCK:
        for w in WINDOWS:
            end = w.get("end") or float("inf")
            if w["start"] <= t1 and t0 <= end:
                return w
    return None


# --- load workers --------------------------------------------------------------------------------

POOL = []          # browsing sessions (dev provider): must never be refused
RPOOL = []         # refresh sessions (short provider)
POOL_LOCK = threading.Lock()
BEARER = {"token": None, "mtime": 0}


def paced(period, body):
    """Runs body(client, i) every `period` seconds (with jitter) until STOP."""
    def run():
        client = Client()
        i = 0
        nxt = now()
        while not STOP.is_set():
            try:
                body(client, i)
            except Exception as e:  # a bug in the driver must not end the soak silently
                FAILURES["driver"].append("%s: %r" % (threading.current_thread().name, e))
                log("driver error in %s: %r" % (threading.current_thread().name, e))
            i += 1
            nxt += period * RNG.uniform(0.7, 1.3)
            STOP.wait(max(0.0, nxt - now()))
        client.close()
    return run


def refused(status):
    return status in (401, 302)


def browse(client, i):
    with POOL_LOCK:
        s = RNG.choice(POOL)
    st = use(client, "browse", s, i % 2)
    if refused(st) and not s.lost:
        s.lost = True
        with LOCK:
            LOSSES.append((now(), "browse", "session %d refused with %s" % (s.id, st)))
        log("LOST: browsing session %d got %s" % (s.id, st))
        n = login(client, "/app", "dev", i % 2, 1 - i % 2)
        if n:
            with POOL_LOCK:
                POOL[POOL.index(s)] = n


def refresh(client, i):
    with POOL_LOCK:
        k = RNG.randrange(len(RPOOL))
        s = RPOOL[k]
    st = use(client, "refresh", s, i % 2)
    if refused(st):
        if provider_restarted_since(s.login_time):
            with LOCK:
                EXPECTED_ENDS.append((now(), s.id))
            # The dev provider forgot the grant at its restart: expected; mark the record.
            s.last["ok"] = "expected-end"
        elif not s.lost:
            s.lost = True
            with LOCK:
                LOSSES.append((now(), "refresh", "session %d refused with %s" % (s.id, st)))
            log("LOST: refresh session %d got %s" % (s.id, st))
        n = login(client, "/r", "short", i % 2, 1 - i % 2)
        if n:
            with POOL_LOCK:
                RPOOL[k] = n


def bearer(client, i):
    f = ENV["bearer_file"]
    try:
        m = os.stat(f).st_mtime
        if m != BEARER["mtime"]:
            BEARER["token"] = open(f).read().strip()
            BEARER["mtime"] = m
    except OSError:
        pass
    if not BEARER["token"]:
        return
    gw = i % 2
    try:
        r = client.get(GW_PORTS[gw], "/api/records", dict(API, Authorization="Bearer " + BEARER["token"]))
    except ConnError as e:
        record("bearer", gw, e.t0, e.t1, None, False, str(e))
        return
    record("bearer", gw, r.t0, r.t1, r.status, r.status == 200, "", r)


def new_login(client, i):
    s = login(client, "/app", "dev", i % 2, 1 - i % 2)
    if s:
        st = use(client, "login-check", s, i % 2)
        # A fresh session must work on the other instance too.
        if st == 200:
            use(client, "login-check", s, 1 - i % 2)
        # Every 4th new login joins the browsing pool (the oldest entry leaves it: the pool
        # keeps turning over, the old session stays valid in Redis until its timeout).
        if i % 4 == 3 and st == 200:
            with POOL_LOCK:
                POOL.pop(0)
                POOL.append(s)


def logout(client, i):
    a, b = i % 2, 1 - i % 2
    s = login(client, "/app", "dev", a, b)
    if not s:
        return
    if use(client, "logout-use", s, b) != 200:
        return
    old = s.jar.copy()
    try:
        r = client.get(GW_PORTS[a], "/oauth2/logout?rd=/bye", dict(NAV, Cookie=s.jar.header(True)))
    except ConnError as e:
        record("logout", a, e.t0, e.t1, None, False, str(e))
        return
    ok = r.status == 302
    record("logout", a, r.t0, r.t1, r.status, ok, "", r)
    if not ok:
        return
    ghost = Session(old, "dev", "/app")
    try:
        r = client.get(GW_PORTS[b], "/app/after-logout", dict(API, Cookie=old.header(True)))
    except ConnError as e:
        record("logout-after", b, e.t0, e.t1, None, False, str(e))
        return
    ok = r.status == 401
    rec = record("logout-after", b, r.t0, r.t1, r.status, ok, "logged-out session %d" % ghost.id, r)
    if r.status == 200:
        FAILURES["logout"].append("t=%.1fs: a logged-out session was still accepted by gw%d"
                                  % (rel(r.t1), b + 1))


def public(client, i):
    gw = i % 2
    try:
        r = client.get(GW_PORTS[gw], "/public/x", API)
    except ConnError as e:
        record("public", gw, e.t0, e.t1, None, False, str(e))
        return
    record("public", gw, r.t0, r.t1, r.status, r.status == 200, "", r)


SAMPLES = []  # (t, gw, rss_kb, fds)


def sample_once():
    for i, g in enumerate(gateways):
        try:
            rss = None
            with open("/proc/%d/status" % g.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
            fds = len(os.listdir("/proc/%d/fd" % g.pid))
            SAMPLES.append((now(), i, rss, fds))
        except OSError:
            pass


def sampler():
    while not STOP.is_set():
        sample_once()
        STOP.wait(5.0)


def fd_count(i):
    try:
        return len(os.listdir("/proc/%d/fd" % gateways[i].pid))
    except OSError:
        return None


# --- faults --------------------------------------------------------------------------------------

def probe_all(client, sessions, label):
    """Probes each session on both instances; returns the ones that got 200 on both."""
    good = []
    for s in sessions:
        sts = [use(client, "probe", s, gw) for gw in (0, 1)]
        if sts == [200, 200]:
            good.append(s)
    return good


def fault(n, kind, down, client):
    must = []
    if kind == "redis":
        with POOL_LOCK:
            cands = list(POOL) + list(RPOOL)
        must = probe_all(client, cands, "before")
    w = {"n": n, "kind": kind, "start": now(), "down": down}
    with LOCK:
        WINDOWS.append(w)
    log("fault %d: %s down for %.0f s" % (n, kind, down))
    if kind == "upstream":
        upstream.stop(signal.SIGTERM)
        time.sleep(down)
        upstream.start()
        wait_for("upstream", upstream_ready, 60)
    elif kind == "provider":
        for p in providers:
            p.stop(signal.SIGTERM)
        time.sleep(down)
        for p in providers:
            p.start()
        wait_for("providers", lambda: provider_ready(0) and provider_ready(1), 60)
        with LOCK:
            PROVIDER_RESTARTS.append(now())
    elif kind == "redis":
        redis.stop(signal.SIGTERM)
        time.sleep(down)
        redis.start()
        wait_for("redis", redis_ready, 60)
    w["back"] = now()
    try:
        wait_for("gateways healthy after the %s fault" % kind, all_healthy, 120)
        w["healthy"] = now()
    except SetupError as e:
        w["healthy"] = None
        FAILURES["recovery"].append("fault %d (%s): %s" % (n, kind, e))
    time.sleep(GRACE)
    w["end"] = now()
    log("fault %d: %s back after %.1f s, gateways healthy %.1f s later"
        % (n, kind, w["back"] - w["start"], (w["healthy"] or w["end"]) - w["back"]))
    if kind == "redis":
        # Not expected to have ended since the probe before: no logout touches pool sessions,
        # and a refresh session whose provider restarted meanwhile is excused.
        good = probe_all(client, must, "after")
        bad = [s for s in must if s not in good and not provider_restarted_since(s.login_time)]
        SURVIVE.append((n, len(must), len(must) - len(bad), ["session %d" % s.id for s in bad]))
        for s in bad:
            with LOCK:
                LOSSES.append((now(), "redis-restart", "session %d did not survive fault %d" % (s.id, n)))


def reload_all(gen):
    t = now()
    for i, g in enumerate(GW):
        subprocess.run(ENV["reconfig"] + [str(g["port"]), str(g["admin"]), str(gen), g["config"]], check=True)
    for g in gateways:
        os.kill(g.pid, signal.SIGHUP)
    with LOCK:
        RELOADS.append({"start": t, "end": now() + RELOAD_GRACE, "gen": gen})
    log("reload %d: SIGHUP to both gateways" % gen)


# --- main ----------------------------------------------------------------------------------------

def setup():
    upstream.start()
    for p in providers:
        p.start()
    redis.start()
    wait_for("nginx upstream", upstream_ready, 30)
    wait_for("providers", lambda: provider_ready(0) and provider_ready(1), 60)
    wait_for("redis", redis_ready, 30)
    for g in gateways:
        g.start()
    wait_for("gateways", lambda: all(simple_get(g["admin"], "/readyz")[0] == 200 for g in GW), 60)
    wait_for("gateways healthy", all_healthy, 30)
    if ENV["bearer_file"]:
        wait_for("bearer token file", lambda: os.path.exists(ENV["bearer_file"]), 30)
    client = Client()
    for k in range(20):
        s = login(client, "/app", "dev", k % 2, 1 - k % 2)
        if not s or use(client, "setup", s, 1 - k % 2) != 200:
            raise SetupError("a login for the browsing pool failed")
        POOL.append(s)
    for k in range(6):
        s = login(client, "/r", "short", k % 2, 1 - k % 2)
        if not s or use(client, "setup", s, 1 - k % 2) != 200:
            raise SetupError("a login for the refresh pool failed")
        RPOOL.append(s)
    client.close()
    with LOCK:
        RECORDS[:] = [r for r in RECORDS if False]  # setup traffic is not part of the counts


def main():
    try:
        setup()
    except (SetupError, OSError, subprocess.SubprocessError) as e:
        print("fault_soak: setup failed: %s" % e, file=sys.stderr)
        for g in GW:
            try:
                sys.stderr.write("".join(open(g["log"], errors="replace").readlines()[-10:]))
            except OSError:
                pass
        teardown()
        return 2
    # FD baseline: everything started and logged in, client connections closed, idle
    # keep-alive connections timed out (keepalive_timeout 5 s).
    time.sleep(7)
    baseline = [fd_count(i) for i in range(2)]
    total = MINUTES * 60.0
    warm = min(60.0, total / 4)
    log("load starts: %.0f s, warm-up %.0f s, seed %s; fd baseline %s" % (total, warm, SEED, baseline))
    workers = [("browse-a", 0.25, browse), ("browse-b", 0.25, browse), ("bearer", 0.33, bearer),
               ("login", 1.5, new_login), ("refresh", 0.5, refresh), ("logout", 6.0, logout),
               ("public", 1.0, public)]
    if not ENV["bearer_file"]:
        workers = [w for w in workers if w[0] != "bearer"]
    threads = [threading.Thread(target=paced(p, f), name=n, daemon=True) for n, p, f in workers]
    threads.append(threading.Thread(target=sampler, name="sampler", daemon=True))
    load_start = now()
    global T0
    T0 = load_start
    for t in threads:
        t.start()

    # Fault schedule: first fault after the warm-up, then one every 60-90 s (shorter in short
    # runs), kinds in a fresh random order each round; the last must be over 20 s before the end.
    spacing = min(75.0, max(25.0, (total - warm - 30.0) / 3.2))
    max_down = 15.0 if spacing >= 60 else 10.0
    fclient = Client()
    n, gen, order = 0, 0, []
    next_fault = load_start + warm
    end = load_start + total
    while True:
        if next_fault + max_down + 25 > end - 20:
            break
        # A reload half-way to the next fault.
        mid = (now() + next_fault) / 2
        STOP.wait(max(0.0, mid - now()))
        gen += 1
        reload_all(gen)
        STOP.wait(max(0.0, next_fault - now()))
        if not order:
            order = RNG.sample(["redis", "upstream", "provider"], 3)
        n += 1
        fault(n, order.pop(0), RNG.uniform(5.0, max_down), fclient)
        next_fault = max(now() + 10, next_fault + spacing * RNG.uniform(0.8, 1.2))
    if end - now() > 15:
        STOP.wait(max(0.0, (now() + end) / 2 - now()))
        gen += 1
        reload_all(gen)
    STOP.wait(max(0.0, end - now()))
    STOP.set()
    for t in threads:
        t.join(HTTP_TIMEOUT + 5)
    load_end = now()
    log("load stopped; final probe of every session")
    # Every browsing session not already counted as lost must still be valid on both instances.
    final_ok = probe_all(fclient, [s for s in POOL if not s.lost], "final")
    final_bad = [s for s in POOL if not s.lost and s not in final_ok]
    for s in final_bad:
        LOSSES.append((now(), "final", "browsing session %d refused at the end" % s.id))
    fclient.close()
    # FD convergence: idle client connections are closed; wait for the gateways to let go.
    fd_end = [None, None]
    deadline = now() + 120
    while now() < deadline:
        fd_end = [fd_count(i) for i in range(2)]
        if all(f is not None and b is not None and f <= b + 10 for f, b in zip(fd_end, baseline)):
            break
        time.sleep(2)
    fd_wait = now() - load_end
    sample_once()
    alive = [g.alive() for g in gateways]
    m = [metrics(i) for i in range(2)]
    report(total, warm, load_start, load_end, baseline, fd_end, fd_wait, alive, m, final_ok)
    rc = 1 if CHECK_FAILED else 0
    teardown()
    return rc


def teardown():
    for g in gateways:
        if g.alive():
            g.stop(signal.SIGTERM, 15)
    for p in [upstream, redis] + providers:
        p.stop(signal.SIGTERM)


# --- report --------------------------------------------------------------------------------------

CHECK_FAILED = []


def classify(r):
    """'fault:KIND' (overlapping a fault window), 'reload' or 'steady'."""
    w = in_fault(r["t0"], r["t1"])
    if w:
        return "fault:" + w["kind"], w
    for x in RELOADS:
        if x["start"] <= r["t1"] and r["t0"] <= x["end"]:
            return "reload", None
    return "steady", None


def documented_5xx(r, w):
    """None if r (a 5xx in window w) is the documented answer for w's fault, else why not."""
    st, kind, ra, body = r["status"], w["kind"], r["retry_after"], r["body"]
    ctype = r.get("ctype", "")
    if kind == "upstream":
        if st in (502, 504) and "text/html" in ctype:
            return None
        return "upstream fault: %s %s" % (st, body[:60])
    if st != 503:
        return "%s fault: %s (not 503) %s" % (kind, st, body[:80])
    if ra is None:
        return "%s fault: 503 without Retry-After" % kind
    want_json = "provider_unavailable" if kind == "provider" else "session_store_unavailable"
    want_html = "Sign-in temporarily unavailable" if kind == "provider" else "Temporarily unavailable"
    if want_json in body or want_html in body:
        return None
    return "%s fault: 503 with an unexpected body: %s" % (kind, body[:80])


def report(total, warm, load_start, load_end, baseline, fd_end, fd_wait, alive, m, final_ok):
    def fail(check, detail):
        RECORDS_FAILS.append((check, detail))

    # Gateway answers only (the provider's own authorize step is not the gateway's).
    counts = collections.OrderedDict()
    undocumented, steady_5xx, unexpected, conn_errors = [], [], [], []
    ra_502 = [0, 0]
    for r in RECORDS:
        cls, w = classify(r)
        key = (r["kind"], cls)
        c = counts.setdefault(key, collections.Counter())
        st = r["status"]
        c["total"] += 1
        c[("conn" if st is None else st)] += 1
        if r["ok"] is not True and r["ok"] != "expected-end":
            c["unexpected"] += 1
        if r["kind"] == "provider-authorize":
            if cls == "steady" and r["ok"] is not True:
                unexpected.append(r)
            continue
        if st is None:
            conn_errors.append(r)  # the gateways never go down: no answer is always a failure
            continue
        if st >= 500:
            if st == 502:
                ra_502[r["retry_after"] is not None] += 1
            if w is None:
                steady_5xx.append((cls, r))
            else:
                why = documented_5xx(r, w)
                if why:
                    undocumented.append((why, r))
        elif not cls.startswith("fault") and r["ok"] is not True and r["ok"] != "expected-end":
            unexpected.append(r)

    def show(r):
        return "t=%.1fs %s gw%s -> %s %s" % (rel(r["t0"]), r["kind"], "-" if r["gw"] is None else r["gw"] + 1,
                                             r["status"], (r["detail"] or r["body"][:60]).replace("\n", " "))

    for cls, r in steady_5xx:
        fail("no 5xx outside fault windows", "%s (%s)" % (show(r), cls))
    for r in conn_errors:
        fail("no 5xx outside fault windows", "no answer: " + show(r))
    for why, r in undocumented:
        fail("5xx inside fault windows documented", "%s: %s" % (why, show(r)))
    for r in unexpected:
        fail("expected answers outside fault windows", show(r))
    for t, what, d in LOSSES:
        fail("no session lost", "t=%.1fs %s: %s" % (rel(t), what, d))
    for msg in FAILURES.pop("logout", []):
        fail("no session lost", msg)
    # Crashes.
    panics = []
    for i, g in enumerate(GW):
        if not alive[i]:
            fail("no crash", "%s (pid %d) is not running (exit %s)" % (g["name"], gateways[i].pid, gateways[i].p.poll()))
        for line in open(g["log"], errors="replace"):
            if "panicked" in line:
                panics.append("%s: %s" % (g["name"], line.strip()[:300]))
    for p in panics[:10]:
        fail("no crash", p)
    # Reloads: every SIGHUP accepted by both.
    reloaded = [sum(1 for l in open(g["log"], errors="replace") if "configuration reloaded" in l) for g in GW]
    refused_reloads = [sum(1 for l in open(g["log"], errors="replace") if "reload refused" in l) for g in GW]
    for i, g in enumerate(GW):
        if reloaded[i] != len(RELOADS) or refused_reloads[i]:
            fail("reloads accepted", "%s: %d of %d reloads logged 'configuration reloaded', %d refused"
                 % (g["name"], reloaded[i], len(RELOADS), refused_reloads[i]))
    # RSS.
    span = min(60.0, (load_end - load_start - warm) / 2)
    rss_rows = []
    for i, g in enumerate(GW):
        first = [s[2] for s in SAMPLES if s[1] == i and load_start + warm <= s[0] < load_start + warm + span]
        last = [s[2] for s in SAMPLES if s[1] == i and load_end - span <= s[0] <= load_end]
        peak_fd = max([s[3] for s in SAMPLES if s[1] == i] or [0])
        if first and last:
            a, b = statistics.median(first), statistics.median(last)
            ch = (b - a) / a * 100
            rss_rows.append((g["name"], a, b, ch, len(first), len(last), peak_fd))
            if abs(ch) > 10:
                fail("RSS flat within 10 %", "%s: %.1f MB -> %.1f MB (%+.1f %%)" % (g["name"], a / 1024, b / 1024, ch))
        else:
            rss_rows.append((g["name"], 0, 0, 0, len(first), len(last), peak_fd))
            fail("RSS flat within 10 %", "%s: too few samples" % g["name"])
        if fd_end[i] is None or baseline[i] is None or fd_end[i] > baseline[i] + 10:
            fail("file descriptors back to baseline", "%s: baseline %s, %s after %.0f s idle"
                 % (g["name"], baseline[i], fd_end[i], fd_wait))
    # Refreshes and bearer tokens really exercised.
    def msum(name, want):
        return sum(v for mm in m for (k, lab), v in mm.items() if k == name and all(x in lab for x in want))
    refreshed = msum("oidc_gateway_auth_events_total", ['event="refreshed"'])
    refresh_failed = msum("oidc_gateway_auth_events_total", ['event="refresh_failed"'])
    logins_ok = msum("oidc_gateway_auth_events_total", ['event="login_succeeded"'])
    logins_failed = msum("oidc_gateway_auth_events_total", ['event="login_failed"'])
    logouts = msum("oidc_gateway_auth_events_total", ['event="logout"'])
    bearer_ok = sum(1 for r in RECORDS if r["kind"] == "bearer" and r["status"] == 200)
    if ENV["helper_flags"]:
        if refreshed < 1:
            fail("refresh and bearer exercised", "no refresh counted (oidc_gateway_auth_events_total refreshed = 0)")
        if bearer_ok < 1:
            fail("refresh and bearer exercised", "no bearer request got 200")
    else:
        fail("refresh and bearer exercised", "bench-env without --bearer-out / token lifetime flags: not exercised")
    for check, details in FAILURES.items():
        for d in details:
            fail(check, d)
        details.clear()

    checks = ["no 5xx outside fault windows", "5xx inside fault windows documented",
              "expected answers outside fault windows", "no session lost", "no crash",
              "reloads accepted", "RSS flat within 10 %", "file descriptors back to baseline",
              "refresh and bearer exercised", "recovery", "driver"]
    fails = collections.OrderedDict()
    for r in RECORDS_FAILS:
        fails.setdefault(r[0], []).append(r[1])

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    L = []
    L.append("### Fault soak, %s, commit %s%s" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), commit,
                                                  " (working tree with changes)" if dirty else ""))
    L.append("")
    L.append("%d cores, load average at the end %s; %.1f minutes of load (warm-up %.0f s), seed %s; gateway %s."
             % (os.cpu_count(), open("/proc/loadavg").read().split()[0], (load_end - load_start) / 60, warm, SEED, ENV["bin"]))
    L.append("Two instances, one Redis (AOF), nginx upstream, two development providers; %d faults, %d reloads (SIGHUP to both)."
             % (len(WINDOWS), len(RELOADS)))
    L.append("")
    L.append("| fault | kind | at | down | back → both healthy | window (incl. %.0f s grace) | 5xx in window | of which after both healthy |" % GRACE)
    L.append("|---|---|---|---|---|---|---|---|")
    for w in WINDOWS:
        h = "%.1f s" % (w["healthy"] - w["back"]) if w.get("healthy") else "**never (120 s)**"
        in_w = [r for r in RECORDS if r["status"] and r["status"] >= 500 and in_fault(r["t0"], r["t1"]) is w]
        late = [r for r in in_w if w.get("healthy") and r["t0"] >= w["healthy"]]
        L.append("| %d | %s | %.0f s | %.1f s | %s | %.1f s | %d | %d |" % (w["n"], w["kind"], rel(w["start"]), w["back"] - w["start"], h, w["end"] - w["start"], len(in_w), len(late)))
    late_all = [(w, r) for w in WINDOWS if w.get("healthy") for r in RECORDS
                if r["status"] and r["status"] >= 500 and r["t0"] >= w["healthy"] and in_fault(r["t0"], r["t1"]) is w]
    if late_all:
        L.append("")
        L.append("5xx after both gateways reported healthy (inside the grace period): " + "; ".join(
            "fault %d +%.2f s: %s gw%s %s %s" % (w["n"], r["t0"] - w["healthy"], r["kind"], r["gw"] + 1, r["status"],
                                                 r["body"][:50].replace("|", "/").replace("\n", " "))
            for w, r in late_all[:8]))
    L.append("")
    L.append("Responses by kind of request and window (steady: no fault and no reload; reload: within %.0f s of a SIGHUP; fault:X: overlapping a fault window). `unexp.`: not the answer expected in steady state (inside fault windows: informational)." % RELOAD_GRACE)
    L.append("")
    cols = sorted({k for c in counts.values() for k in c if isinstance(k, int)})
    L.append("| kind | window | total | " + " | ".join(str(x) for x in cols) + " | no answer | unexp. |")
    L.append("|---|---|---|" + "---|" * len(cols) + "---|---|")
    order = ["browse", "refresh", "bearer", "login-start", "provider-authorize", "login-callback", "login-check",
             "logout-use", "logout", "logout-after", "public", "probe"]
    for key in sorted(counts, key=lambda k: (order.index(k[0]) if k[0] in order else 99, k[1])):
        c = counts[key]
        L.append("| %s | %s | %d | %s | %d | %d |" % (key[0], key[1], c["total"], " | ".join(str(c.get(x, 0)) for x in cols), c.get("conn", 0), c.get("unexpected", 0)))
    L.append("")
    L.append("502 answers with / without Retry-After: %d / %d. Metrics (both instances): logins %d ok / %d failed, refreshed %d, refresh_failed %d, logouts %d; refresh sessions ended because their provider restarted (expected: the development provider forgets its grants): %d."
             % (ra_502[1], ra_502[0], logins_ok, logins_failed, refreshed, refresh_failed, logouts, len(EXPECTED_ENDS)))
    L.append("")
    L.append("Must-survive sessions per Redis restart (valid on both instances just before the kill, probed on both after the window): " +
             (", ".join("fault %d: %d/%d" % (n, ok, p) for n, p, ok, _ in SURVIVE) or "no Redis restart") +
             "; browsing sessions valid at the end: %d/%d." % (len(final_ok), len(POOL)))
    L.append("")
    L.append("| gateway | RSS first %.0f s after warm-up (median) | RSS last %.0f s | change | fds baseline | fds peak | fds end (after %.0f s idle) |" % (span, span, fd_wait))
    L.append("|---|---|---|---|---|---|---|")
    for i, (name, a, b, ch, nf, nl, pk) in enumerate(rss_rows):
        L.append("| %s | %.1f MB | %.1f MB | %+.1f %% | %s | %d | %s |" % (name, a / 1024, b / 1024, ch, baseline[i], pk, fd_end[i]))
    L.append("")
    L.append("| check | result |")
    L.append("|---|---|")
    for ck in checks:
        if ck in ("recovery", "driver") and ck not in fails:
            continue
        d = fails.get(ck)
        L.append("| %s | %s |" % (ck, "**FAIL** (%d): %s" % (len(d), "; ".join(d[:3]).replace("|", "/")) if d else "pass"))
    text = "\n".join(L) + "\n"
    with open(os.path.join(TMP, "records.jsonl"), "w") as f:
        for r in RECORDS:
            f.write(json.dumps(dict(r, t0=rel(r["t0"]), t1=rel(r["t1"]), window=classify(r)[0])) + "\n")
        for w in WINDOWS:
            f.write(json.dumps({"window": w["kind"], "n": w["n"], "start": rel(w["start"]), "back": rel(w["back"]),
                                "healthy": rel(w["healthy"]) if w.get("healthy") else None, "end": rel(w["end"])}) + "\n")
    sys.stdout.write(text)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(ENV["out"])), exist_ok=True)
        with open(ENV["out"], "w") as f:
            f.write(text)
            for ck, d in fails.items():
                f.write("\n%s:\n" % ck + "".join("  - %s\n" % x for x in d))
    except OSError:
        pass
    if fails:
        print("\nFAILED checks:", file=sys.stderr)
        for ck, d in fails.items():
            print("  %s (%d):" % (ck, len(d)), file=sys.stderr)
            for x in d[:15]:
                print("    - %s" % x, file=sys.stderr)
            if len(d) > 15:
                print("    ... %d more (in %s)" % (len(d) - 15, ENV["out"]), file=sys.stderr)
        CHECK_FAILED.append(True)
    # Errors the gateways logged, for the report.
    for g in GW:
        errs = collections.Counter()
        for line in open(g["log"], errors="replace"):
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            if " ERROR " in line or " WARN " in line:
                msg = re.sub(r"^\S+\s+", "", line.strip())
                errs[re.sub(r"\d+(\.\d+)?(ms|s)?", "N", msg)[:160]] += 1
        if errs:
            print("\n%s: WARN/ERROR lines (normalised, count):" % g["name"], file=sys.stderr)
            for msg, k in errs.most_common(12):
                print("  %5d  %s" % (k, msg), file=sys.stderr)


RECORDS_FAILS = []


if __name__ == "__main__":
    sys.exit(main())
