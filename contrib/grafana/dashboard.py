#!/usr/bin/env python3
"""The Grafana dashboard of oidc-gateway, as code: panels, queries and layout in one readable place.

    python3 contrib/grafana/dashboard.py > contrib/grafana/oidc-gateway.json

tests/it/monitoring.rs fails when oidc-gateway.json is not what this prints, and checks every
query against a real Prometheus scraping a real gateway. docs/monitor.md lists the panels.
"""
import json
I='instance=~"$instance"'
panels=[]
y=0
pid=1
def row(title):
    global y,pid
    panels.append({"type":"row","title":title,"id":pid,"collapsed":False,"gridPos":{"h":1,"w":24,"x":0,"y":y},"panels":[]})
    pid+=1; y+=1
def panel(title, targets, unit="short", w=12, h=8, x=0, kind="timeseries", desc="", stack=False, thresholds=None, mappings=None):
    global pid
    p={"type":kind,"title":title,"id":pid,"description":desc,
       "datasource":{"type":"prometheus","uid":"${datasource}"},
       "gridPos":{"h":h,"w":w,"x":x,"y":y},
       "targets":[{"refId":chr(65+i),"expr":e,"legendFormat":l,"datasource":{"type":"prometheus","uid":"${datasource}"}} for i,(e,l) in enumerate(targets)],
       "fieldConfig":{"defaults":{"unit":unit},"overrides":[]},
       "options":{}}
    if kind=="timeseries":
        p["fieldConfig"]["defaults"]["custom"]={"drawStyle":"line","lineWidth":1,"fillOpacity":10,"stacking":{"mode":"normal" if stack else "none"}}
        p["options"]={"legend":{"displayMode":"table","placement":"bottom","calcs":["mean","max","lastNotNull"]},"tooltip":{"mode":"multi"}}
    if kind=="stat":
        p["options"]={"reduceOptions":{"calcs":["lastNotNull"],"fields":"","values":False},"colorMode":"background","graphMode":"none","textMode":"value_and_name"}
    if thresholds:
        p["fieldConfig"]["defaults"]["thresholds"]={"mode":"absolute","steps":thresholds}
    if mappings:
        p["fieldConfig"]["defaults"]["mappings"]=mappings
    panels.append(p); pid+=1
    return p
updown=[{"type":"value","options":{"0":{"text":"DOWN","color":"red","index":0},"1":{"text":"UP","color":"green","index":1}}}]
red_green=[{"color":"red","value":None},{"color":"green","value":1}]

row("Traffic")
panel("Requests by route and status",[(f'sum by (route, status) (rate(oidc_gateway_requests_total{{{I}}}[$__rate_interval]))',"{{route}} {{status}}")],"reqps",desc="Requests answered per second, by route and status code. Gateway endpoints (login, callback, logout, forward-auth) count under route \"gateway\".",stack=True)
panel("Latency by route (p50, p95, p99)",[
 (f'histogram_quantile(0.50, sum by (route, le) (rate(oidc_gateway_request_duration_seconds_bucket{{{I}}}[$__rate_interval])))',"{{route}} p50"),
 (f'histogram_quantile(0.95, sum by (route, le) (rate(oidc_gateway_request_duration_seconds_bucket{{{I}}}[$__rate_interval])))',"{{route}} p95"),
 (f'histogram_quantile(0.99, sum by (route, le) (rate(oidc_gateway_request_duration_seconds_bucket{{{I}}}[$__rate_interval])))',"{{route}} p99")],"s",x=12,desc="Time to answer a request, upstream included.")
y+=8
panel("5xx ratio by route",[(f'sum by (route) (rate(oidc_gateway_requests_total{{{I},status=~"5.."}}[$__rate_interval])) / sum by (route) (rate(oidc_gateway_requests_total{{{I}}}[$__rate_interval]))',"{{route}}")],"percentunit",w=8,desc="Share of answers that are 5xx (502/504: upstream down or slow). Alert: OidcGatewayHigh5xxRatio.")
panel("Upstream time by route (p95)",[(f'histogram_quantile(0.95, sum by (route, le) (rate(oidc_gateway_upstream_duration_seconds_bucket{{{I}}}[$__rate_interval])))',"{{route}}")],"s",w=8,x=8,desc="From choosing the upstream to its response head (connect included): the upstream's share of the latency.")
panel("Requests in flight",[(f'sum by (instance) (oidc_gateway_requests_in_flight{{{I}}})',"{{instance}}")],"short",w=8,x=16,desc="Requests being processed by the proxy listener now.")
y+=8
row("Authentication")
panel("Logins",[(f'sum by (provider, event) (rate(oidc_gateway_auth_events_total{{{I},event=~"login_started|login_succeeded|login_failed"}}[$__rate_interval]))',"{{provider}} {{event}}")],"ops",w=8,desc="Logins started (sent to the provider), succeeded and failed. Alert: OidcGatewayLoginFailureRatio.")
panel("Refreshes",[(f'sum by (provider, event) (rate(oidc_gateway_auth_events_total{{{I},event=~"refreshed|refresh_failed"}}[$__rate_interval]))',"{{provider}} {{event}}")],"ops",w=8,x=8,desc="Sessions whose tokens were refreshed at the provider, and refreshes that failed (the user logs in again).")
panel("Forbidden and logouts",[(f'sum by (provider, event) (rate(oidc_gateway_auth_events_total{{{I},event=~"forbidden|logout"}}[$__rate_interval]))',"{{provider}} {{event}}")],"ops",w=8,x=16,desc="Requests refused by route.require (403), and logouts (front- and back-channel).")
y+=8
panel("Session cookie size (p50, p95)",[
 (f'histogram_quantile(0.50, sum by (provider, le) (rate(oidc_gateway_session_cookie_bytes_bucket{{{I}}}[$__rate_interval])))',"{{provider}} p50"),
 (f'histogram_quantile(0.95, sum by (provider, le) (rate(oidc_gateway_session_cookie_bytes_bucket{{{I}}}[$__rate_interval])))',"{{provider}} p95")],"bytes",w=12,desc="Bytes of session cookie values written at login and renewal. Above about 3800 bytes a session needs several cookie chunks.")
panel("Session store",[(f'min by (instance) (oidc_gateway_session_store_up{{{I}}})',"{{instance}}")],"none",w=6,x=12,kind="stat",thresholds=red_green,mappings=updown,desc="0 while Redis does not answer (store = \"redis\", or revocation = \"redis\"); always 1 for cookie sessions with in-memory revocations. Alert: OidcGatewaySessionStoreDown.")
panel("Revoked sessions",[(f'max by (instance) (oidc_gateway_session_revocations{{{I}}})',"{{instance}}")],"short",w=6,x=18,kind="stat",desc="Provider sessions and users revoked by back-channel logout whose cookie sessions this instance refuses (store = \"cookie\"); bounded by session.max_revocations.")
y+=8
row("Provider")
panel("Provider up",[(f'min by (provider) (oidc_gateway_provider_up{{{I}}})',"{{provider}}")],"none",w=6,kind="stat",thresholds=red_green,mappings=updown,desc="0 after a call to the provider failed (unreachable, timeout, 5xx). Alert: OidcGatewayProviderDown.")
panel("Provider ready",[(f'min by (provider) (oidc_gateway_provider_ready{{{I}}})',"{{provider}}")],"none",w=6,x=6,kind="stat",thresholds=red_green,mappings=[{"type":"value","options":{"0":{"text":"NOT LOADED","color":"red","index":0},"1":{"text":"READY","color":"green","index":1}}}],desc="1 once discovery and JWKS have loaded (/readyz). Alert: OidcGatewayProviderNotReady.")
panel("JWKS refreshes",[(f'sum by (provider, result) (increase(oidc_gateway_jwks_refresh_total{{{I}}}[$__rate_interval]))',"{{provider}} {{result}}")],"short",w=12,x=12,desc="JWKS fetches by result (periodic refresh and unknown kid). Alert: OidcGatewayJwksRefreshFailing.")
y+=8
panel("Provider call time (p95)",[(f'histogram_quantile(0.95, sum by (provider, endpoint, le) (rate(oidc_gateway_provider_request_duration_seconds_bucket{{{I}}}[$__rate_interval])))',"{{provider}} {{endpoint}}")],"s",w=12,desc="Discovery, JWKS, token and UserInfo calls. Only logins and refreshes wait for them; authenticated requests never do.")
panel("Provider call errors",[(f'sum by (provider, endpoint) (rate(oidc_gateway_provider_errors_total{{{I}}}[$__rate_interval]))',"{{provider}} {{endpoint}}")],"ops",w=12,x=12,desc="Failed calls to the provider by endpoint (unreachable, timeout, error status, oversized answer).")
y+=8
row("Process")
panel("CPU",[(f'rate(process_cpu_seconds_total{{{I}}}[$__rate_interval])',"{{instance}}")],"percentunit",w=6,desc="CPU time used per second (1 = one core).")
panel("Resident memory",[(f'process_resident_memory_bytes{{{I}}}',"{{instance}}")],"bytes",w=6,x=6)
panel("Open file descriptors",[(f'process_open_fds{{{I}}}',"{{instance}} open"),(f'process_max_fds{{{I}}}',"{{instance}} limit")],"short",w=6,x=12,desc="Each client and upstream connection holds one; LimitNOFILE in the unit sets the limit.")
panel("Config reloads and TLS certificate",[
 (f'sum by (result) (increase(oidc_gateway_config_reloads_total{{{I}}}[$__range]))',"reloads {{result}}"),
 (f'min by (instance) (oidc_gateway_tls_certificate_expiry_timestamp_seconds{{{I}}}) - time()',"certificate expires in")],"short",w=6,x=18,kind="stat",desc="Reloads in the time range by result (alert: OidcGatewayConfigReloadFailed), and time left until the listener's certificate expires (alerts: OidcGatewayCertificateExpiresSoon / VerySoon).")
panels[-1]["fieldConfig"]["overrides"]=[{"matcher":{"id":"byFrameRefID","options":"B"},"properties":[{"id":"unit","value":"s"},{"id":"thresholds","value":{"mode":"absolute","steps":[{"color":"red","value":None},{"color":"orange","value":259200},{"color":"green","value":1209600}]}}]}]
y+=8

dash={
 "__inputs":[],
 "title":"oidc-gateway","uid":"oidc-gateway","description":"oidc-gateway: traffic, logins, provider and process (contrib/grafana, docs/monitor.md)",
 "tags":["oidc-gateway","oidc","sso"],"timezone":"browser","schemaVersion":39,"version":1,"editable":True,
 "refresh":"30s","time":{"from":"now-6h","to":"now"},
 "templating":{"list":[
   {"name":"datasource","type":"datasource","query":"prometheus","label":"Data source","current":{},"hide":0,"refresh":1},
   {"name":"instance","type":"query","label":"Instance","datasource":{"type":"prometheus","uid":"${datasource}"},
    "query":{"query":"label_values(oidc_gateway_requests_in_flight, instance)","refId":"instance"},
    "definition":"label_values(oidc_gateway_requests_in_flight, instance)",
    "multi":True,"includeAll":True,"current":{"text":"All","value":"$__all"},"refresh":2,"sort":1,"hide":0}]},
 "annotations":{"list":[]},
 "links":[],
 "panels":panels}
print(json.dumps(dash,indent=2))
