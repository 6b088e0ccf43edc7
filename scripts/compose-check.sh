#!/usr/bin/env bash
# Validates the lab stack without starting it (no docker daemon needed):
#   - docker-compose.yml as Debian's docker-compose 1.29.2 reads it (`config -q`),
#     installed with apt-get when missing;
#   - every file it mounts exists, the build context has its Dockerfile;
#   - health checks on every long-running service, start order by depends_on conditions;
#   - the ClickHouse XML, Prometheus and Grafana YAML and the dashboard JSON parse, and agree
#     with each other and with the compose file (user, database, password variable, uids);
#   - the dashboard's SQL uses only tables and columns of docs/schema.md, its PromQL only
#     metrics of docs/metrics.md; the Kafka topic is flows-v<flow record version of docs/schema.md>;
#   - the Dockerfile's Go version is go.mod's, .dockerignore leaves out .git .cache data bin.
# Usage: scripts/compose-check.sh  (from anywhere; `make test` runs it). Exit 1 on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "compose-check: FAIL: $*" >&2; exit 1; }

# Debian's docker-compose is the oldest reader we promise to satisfy; its package also
# brings python3-yaml for the checks below.
scripts/apt-deps.sh docker-compose:docker-compose || fail "could not install Debian's docker-compose with apt-get"
command -v docker-compose >/dev/null 2>&1 || fail "docker-compose is not on PATH after installing it"

resolved=$(mktemp)
errs=$(mktemp)
trap 'rm -f "$resolved" "$errs"' EXIT

if ! docker-compose -f docker-compose.yml config -q 2>"$errs"; then
  cat "$errs" >&2
  fail "docker-compose $(docker-compose version --short 2>/dev/null) rejects docker-compose.yml"
fi
docker-compose -f docker-compose.yml config >"$resolved" 2>"$errs" || { cat "$errs" >&2; fail "docker-compose config"; }
echo "compose-check: ok   docker-compose $(docker-compose version --short 2>/dev/null) accepts docker-compose.yml"

bash -n scripts/lab-test.sh || fail "scripts/lab-test.sh has a syntax error"

py=""
for c in /usr/bin/python3 python3; do
  if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import yaml' 2>/dev/null; then py=$c; break; fi
done
if [ -z "$py" ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "compose-check: installing python3-yaml" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null \
    || fail "python3 with the yaml module is needed (apt-get install python3-yaml)"
  py=/usr/bin/python3
fi

"$py" - "$resolved" <<'PY'
import json, os, re, sys
import xml.etree.ElementTree as ET
import yaml

resolved = yaml.safe_load(open(sys.argv[1]))
services = resolved.get("services", {})
errors = []

def err(msg):
    errors.append(msg)

mark = 0

def section():
    global mark
    mark = len(errors)

def clean():
    return len(errors) == mark

def ok(msg):
    print("compose-check: ok   " + msg)

def env_of(name):
    env = services.get(name, {}).get("environment", {}) or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}

def load_yaml(path):
    try:
        return yaml.safe_load(open(path)) or {}
    except (OSError, yaml.YAMLError) as e:
        err(f"{path}: cannot read as YAML: {e}")
        return {}

def is_oneshot(svc):
    return svc.get("restart") in ("no", False, None)

# --- services, health checks, start order ---------------------------------------------
section()
want = ["clickhouse", "kafka", "kafka-init", "migrate", "collect", "land", "prometheus", "grafana"]
for name in want:
    if name not in services:
        err(f"service {name} is missing")
oneshots = {n for n, s in services.items() if is_oneshot(s)}
if oneshots != {"kafka-init", "migrate"}:
    err(f"one-shot services (restart: \"no\") should be kafka-init and migrate, found {sorted(oneshots)}")
healthy = set()
for name, svc in services.items():
    hc = svc.get("healthcheck")
    if name in oneshots:
        continue
    if not hc or hc.get("disable") or not hc.get("test"):
        err(f"long-running service {name} has no health check")
    else:
        healthy.add(name)
    if svc.get("restart") != "unless-stopped":
        err(f"service {name} should restart unless-stopped")
for name, svc in services.items():
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        err(f"service {name}: depends_on without conditions")
        continue
    for dep, spec in deps.items():
        cond = (spec or {}).get("condition")
        if dep not in services:
            err(f"service {name} depends on unknown service {dep}")
        elif cond == "service_healthy" and dep not in healthy:
            err(f"service {name} waits for {dep} to be healthy but {dep} has no health check")
        elif cond == "service_completed_successfully" and dep not in oneshots:
            err(f"service {name} waits for {dep} to complete but {dep} is long-running")
        elif cond not in ("service_healthy", "service_completed_successfully"):
            err(f"service {name} depends on {dep} with condition {cond!r}: say what it waits for")
def cond(a, b):
    return ((services.get(a, {}).get("depends_on") or {}).get(b) or {}).get("condition")
for a, b, c in [("land", "migrate", "service_completed_successfully"),
                ("migrate", "clickhouse", "service_healthy"),
                ("land", "kafka-init", "service_completed_successfully"),
                ("collect", "kafka-init", "service_completed_successfully"),
                ("kafka-init", "kafka", "service_healthy")]:
    if cond(a, b) != c:
        err(f"{a} must depend on {b} with condition {c}")
for name, svc in services.items():
    img = svc.get("image", "")
    if "build" not in svc and (":" not in img or img.endswith(":latest")):
        err(f"service {name}: pin the image tag ({img})")
if clean(): ok(f"{len(healthy)} long-running services have health checks; start order: "
       "clickhouse → migrate → land, kafka → kafka-init → collect, land")

# --- files the stack uses ---------------------------------------------------------------
section()
mounts = {}  # target -> source, per service
named = set((resolved.get("volumes") or {}).keys())
nbind = 0
for name, svc in services.items():
    mounts[name] = {}
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            src, dst, kind = v.get("source", ""), v.get("target", ""), v.get("type")
        else:
            parts = v.split(":")
            src, dst = parts[0], parts[1]
            kind = "bind" if src.startswith(("/", ".", "~")) else "volume"
        if kind == "bind":
            nbind += 1
            if not os.path.exists(src):
                err(f"service {name} mounts {src}, which does not exist")
            mounts[name][dst] = src
        elif src not in named:
            err(f"service {name} uses volume {src}, not declared under volumes:")
    build = svc.get("build")
    if build:
        ctx = build if isinstance(build, str) else build.get("context", ".")
        df = os.path.join(ctx, (build.get("dockerfile") if isinstance(build, dict) else None) or "Dockerfile")
        if not os.path.isfile(df):
            err(f"service {name} builds from {df}, which does not exist")
ports = [str(p) if not isinstance(p, dict) else f"{p.get('published')}:{p.get('target')}/{p.get('protocol', 'tcp')}"
         for p in services.get("collect", {}).get("ports", [])]
for p in ("2055", "4739", "6343"):
    if f"{p}:{p}/udp" not in ports:
        err(f"collect must publish {p}/udp (has {ports})")
if clean(): ok(f"{nbind} bind-mounted files/directories exist; named volumes declared; collect publishes 2055, 4739, 6343/udp")

# --- Dockerfile and .dockerignore ---------------------------------------------------------
section()
gomod = open("go.mod").read()
m = re.search(r"^go (\d+\.\d+(?:\.\d+)?)\s*$", gomod, re.M)
dockerfile = open("Dockerfile").read()
d = re.search(r"^ARG GO_VERSION=(\S+)", dockerfile, re.M)
if not m or not d or m.group(1) != d.group(1):
    err(f"Dockerfile GO_VERSION ({d and d.group(1)}) must equal go.mod's go line ({m and m.group(1)})")
if "CGO_ENABLED=1 go build -trimpath -ldflags '-s -w' -o /flowlens ./cmd/flowlens" not in dockerfile:
    err("Dockerfile no longer builds with CGO_ENABLED=1 go build -trimpath -ldflags '-s -w' ./cmd/flowlens (cgo: the sensor's AF_PACKET)")
sensor = services.get("sensor")
if not sensor:
    err("no sensor service")
else:
    if sensor.get("network_mode") != "host":
        err("sensor: network_mode must be host (it captures on a host interface)")
    if "NET_RAW" not in (sensor.get("cap_add") or []):
        err("sensor: cap_add must hold NET_RAW (AF_PACKET)")
    if "sensor" not in (sensor.get("profiles") or []):
        err("sensor: must be in the sensor profile (not started without a mirror port)")
    env = sensor.get("environment") or {}
    if env.get("FLOWLENS_EXPORT_COLLECTORS") != "127.0.0.1:4739":
        err("sensor: FLOWLENS_EXPORT_COLLECTORS must be collect's published IPFIX port, 127.0.0.1:4739")
ignore = {l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")}
for p in (".git", ".cache", "data", "bin"):
    if p not in ignore:
        err(f".dockerignore must exclude {p}")
if clean(): ok(f"Dockerfile builds with Go {d.group(1)} (go.mod), .dockerignore excludes .git .cache data bin")

# --- schema version and Kafka topic -------------------------------------------------------
section()
schema_md = open("docs/schema.md").read()
sv = re.search(r"flow record version (\d+) ", schema_md)
cmd = services.get("kafka-init", {}).get("command") or []
cmd = cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]
topic = cmd[cmd.index("--topic") + 1] if "--topic" in cmd else None
parts = cmd[cmd.index("--partitions") + 1] if "--partitions" in cmd else "0"
if not sv or topic != f"flows-v{sv.group(1)}":
    err(f"kafka-init creates topic {topic}, the flow record is version {sv and sv.group(1)} (docs/schema.md): "
        f"the collector writes flows-v<record version>")
if not parts.isdigit() or int(parts) < 1:
    err(f"kafka-init partitions {parts!r} is not a positive number")
if clean(): ok(f"topic {topic} matches flow record version {sv.group(1)} ({parts} partitions)")

# --- ClickHouse configuration -------------------------------------------------------------
section()
ch_env = env_of("clickhouse")
land_env = env_of("land")
mig_env = env_of("migrate")
xmls = {}
for dst, src in mounts.get("clickhouse", {}).items():
    if src.endswith(".xml") and os.path.isfile(src):
        try:
            xmls[dst] = ET.parse(src).getroot()
        except ET.ParseError as e:
            err(f"{src}: not well-formed XML: {e}")
users = [r for r in xmls.values() if r.find("users") is not None]
configs = [r for r in xmls.values() if r.find("remote_servers") is not None]
user = land_env.get("FLOWLENS_CLICKHOUSE_USER")
for e, n in ((land_env, "land"), (mig_env, "migrate")):
    for k in ("FLOWLENS_CLICKHOUSE_ADDR", "FLOWLENS_CLICKHOUSE_DATABASE", "FLOWLENS_CLICKHOUSE_USER",
              "FLOWLENS_CLICKHOUSE_PASSWORD", "FLOWLENS_CLICKHOUSE_CLUSTER"):
        if k not in e:
            err(f"service {n} lacks {k}")
    if e.get("FLOWLENS_CLICKHOUSE_DATABASE") != ch_env.get("CLICKHOUSE_DB"):
        err(f"service {n} uses database {e.get('FLOWLENS_CLICKHOUSE_DATABASE')}, the server creates {ch_env.get('CLICKHOUSE_DB')}")
if len(users) != 1:
    err("one mounted ClickHouse XML must define <users>")
else:
    u = users[0].find(f"users/{user}")
    if u is None:
        err(f"ClickHouse user {user} (FLOWLENS_CLICKHOUSE_USER) is not defined in the mounted users XML")
    else:
        pw = u.find("password")
        var = pw.get("from_env") if pw is not None else None
        if not var or var not in ch_env:
            err(f"user {user}: <password from_env=...> must name a variable the clickhouse service sets ({var})")
        elif ch_env[var] != land_env.get("FLOWLENS_CLICKHOUSE_PASSWORD"):
            err(f"the server's {var} and the flowlens roles' FLOWLENS_CLICKHOUSE_PASSWORD differ")
if ch_env.get("CLICKHOUSE_SKIP_USER_SETUP") != "1":
    err("clickhouse must set CLICKHOUSE_SKIP_USER_SETUP=1 (users come from deploy/clickhouse only)")
if len(configs) != 1:
    err("one mounted ClickHouse XML must define <remote_servers>")
else:
    c = configs[0]
    if c.find("remote_servers/flowlens") is None:
        err("remote_servers must define the cluster flowlens")
    for k in ("shard", "replica"):
        if c.find(f"macros/{k}") is None:
            err(f"macros must define {k}")
    if c.find("keeper_server/raft_configuration/server") is None or c.find("zookeeper/node") is None:
        err("the embedded Keeper (keeper_server) and its client (zookeeper) must be configured")
if land_env.get("FLOWLENS_CLICKHOUSE_CLUSTER", "x") != "":
    err("the default lab is single-server: FLOWLENS_CLICKHOUSE_CLUSTER must default to empty")
if clean(): ok(f"ClickHouse: user {user} (password from {var}), database {ch_env.get('CLICKHOUSE_DB')}, "
       "cluster flowlens with macros and embedded Keeper; default single-server")

# --- Prometheus ---------------------------------------------------------------------------
section()
prom_src = mounts.get("prometheus", {}).get("/etc/prometheus/prometheus.yml")
prom = load_yaml(prom_src) if prom_src else {}
jobs = {j["job_name"]: j for j in prom.get("scrape_configs", [])}
for job in ("collect", "land"):
    j = jobs.get(job)
    if not j:
        err(f"prometheus.yml has no scrape job {job}")
        continue
    listen = env_of(job).get("FLOWLENS_HTTP_LISTEN", ":8080")
    port = int(listen.rsplit(":", 1)[1])
    targets = [(n, s.get("port")) for s in j.get("dns_sd_configs", []) for n in s.get("names", [])]
    targets += [tuple(t.rsplit(":", 1)) for s in j.get("static_configs", []) for t in s.get("targets", [])]
    if not any(n == job and int(p) == port for n, p in targets):
        err(f"scrape job {job} does not reach service {job} on port {port} ({targets})")
if clean(): ok("Prometheus scrapes collect and land on their FLOWLENS_HTTP_LISTEN port")

# --- Grafana provisioning -----------------------------------------------------------------
section()
g_mounts = mounts.get("grafana", {})
g_env = env_of("grafana")
ds_dir = g_mounts.get("/etc/grafana/provisioning/datasources")
db_dir = g_mounts.get("/etc/grafana/provisioning/dashboards")
uids, ds_by_type = set(), {}
if not (ds_dir and db_dir and os.path.isdir(ds_dir) and os.path.isdir(db_dir)):
    err("grafana must mount provisioning/datasources and provisioning/dashboards")
else:
    for f in sorted(os.listdir(ds_dir)):
        doc = load_yaml(os.path.join(ds_dir, f))
        if doc.get("apiVersion") != 1:
            err(f"{f}: apiVersion must be 1")
        for ds in doc.get("datasources", []):
            uids.add(ds.get("uid"))
            ds_by_type[ds.get("type")] = ds
    chds = ds_by_type.get("grafana-clickhouse-datasource")
    if not chds:
        err("no grafana-clickhouse-datasource data source is provisioned")
    else:
        jd = chds.get("jsonData", {})
        if jd.get("host") not in services or jd.get("protocol") != "native" or int(jd.get("port", 0)) != 9000:
            err(f"ClickHouse data source must reach service clickhouse natively on 9000 ({jd})")
        if jd.get("username") != user or jd.get("defaultDatabase") != ch_env.get("CLICKHOUSE_DB"):
            err("ClickHouse data source user/database differ from the compose file")
        pw = str(chds.get("secureJsonData", {}).get("password", ""))
        var = pw.lstrip("$").strip("{}")
        if not pw.startswith("$") or g_env.get(var) != land_env.get("FLOWLENS_CLICKHOUSE_PASSWORD"):
            err("ClickHouse data source password must be $FLOWLENS_CLICKHOUSE_PASSWORD, set on grafana")
    pds = ds_by_type.get("prometheus")
    if not pds or "prometheus:9090" not in pds.get("url", ""):
        err("Prometheus data source must point at http://prometheus:9090")
    plugins = g_env.get("GF_PLUGINS_PREINSTALL_SYNC", "") + "," + g_env.get("GF_INSTALL_PLUGINS", "")
    if "grafana-clickhouse-datasource" not in plugins.split(","):
        err("grafana must install grafana-clickhouse-datasource")
    dash_files = []
    for f in sorted(os.listdir(db_dir)):
        doc = load_yaml(os.path.join(db_dir, f))
        for p in doc.get("providers", []):
            path = p.get("options", {}).get("path")
            src = g_mounts.get(path)
            if not src or not os.path.isdir(src):
                err(f"dashboard provider path {path} is not a mounted directory")
                continue
            dash_files += [os.path.join(src, x) for x in sorted(os.listdir(src)) if x.endswith(".json")]
    home = g_env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        hdir, hname = home.rsplit("/", 1)
        if not os.path.isfile(os.path.join(g_mounts.get(hdir, "/nonexistent"), hname)):
            err(f"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH {home} is not a mounted file")
    if not dash_files:
        err("no dashboard JSON is provisioned")

# --- dashboards: JSON, data sources, SQL against docs/schema.md, PromQL against docs/metrics.md
section()
tables = {}
for t in re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\) ENGINE", schema_md, re.S):
    tables[t.group(1)] = set(re.findall(r"^\s*`(\w+)`", t.group(2), re.M))
metrics = set(re.findall(r"`(flowlens_\w+)`", open("docs/metrics.md").read()))
KEYWORDS = {"select", "from", "where", "and", "or", "not", "in", "as", "group", "by", "order", "asc",
            "desc", "limit", "interval", "second", "minute", "hour", "day", "having", "distinct",
            "with", "null", "is", "between", "like", "case", "when", "then", "else", "end"}

def check_sql(where, sql):
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "''", sql)
    s = re.sub(r"\$\{?\w+\}?", " ", s)  # Grafana macros and variables
    used = set(re.findall(r"\bFROM\s+([A-Za-z_][\w.]*)", s, re.I))
    aliases = {a.lower() for a in re.findall(r"\bAS\s+([A-Za-z_]\w*)", s, re.I)}
    idents = {m.group(1) for m in re.finditer(r"\b([A-Za-z_]\w*)\b(?!\s*\()", s)}
    unknown_t = [t for t in used if t not in tables]
    if unknown_t:
        err(f"{where}: table(s) {unknown_t} not in docs/schema.md")
        return
    cols = set().union(*(tables[t] for t in used)) if used else set()
    bad = sorted(i for i in idents
                 if i.lower() not in KEYWORDS and i.lower() not in aliases and i not in used and i not in cols)
    if bad:
        err(f"{where}: {bad} are not columns of {sorted(used)} in docs/schema.md")

nsql = nprom = 0
for f in dash_files:
    try:
        dash = json.load(open(f))
    except ValueError as e:
        err(f"{f}: not valid JSON: {e}")
        continue
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))
    for p in walk(dash.get("panels", [])):
        for t in p.get("targets", []):
            ds = t.get("datasource") or p.get("datasource") or {}
            where = f"{os.path.basename(f)} panel {p.get('title')!r} {t.get('refId')}"
            if ds.get("uid") not in uids:
                err(f"{where}: data source uid {ds.get('uid')} is not provisioned ({sorted(uids)})")
            if "rawSql" in t:
                nsql += 1
                check_sql(where, t["rawSql"])
            if "expr" in t:
                nprom += 1
                for name in re.findall(r"\b(flowlens_[a-z0-9_]*[a-z0-9])\b(?![.*+])", t["expr"]):
                    if name not in metrics:
                        err(f"{where}: metric {name} is not in docs/metrics.md")
if clean(): ok(f"Grafana: data sources {sorted(uids)}, {len(dash_files)} dashboard(s): {nsql} SQL queries use "
       f"columns of docs/schema.md, {nprom} PromQL queries use metrics of docs/metrics.md")

if errors:
    for e in errors:
        print("compose-check: FAIL: " + e, file=sys.stderr)
    sys.exit(1)
PY
echo "compose-check: all checks passed"
